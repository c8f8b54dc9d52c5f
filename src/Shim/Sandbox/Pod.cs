using System.Collections.Concurrent;
using Containerd.Events;
using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Hypervisor;
using ShimV2.Shim.Events;
using ShimV2.Shim.Processes;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Sandbox;

/// <summary>What a container's creation needs from the task API's Create, decoded.</summary>
/// <param name="RequestedAt">When the shim began creating it: the origin of its timeline (and of the VM's, when this
/// Create boots the pod's VM).</param>
public sealed record ContainerCreation(
    string Id,
    string Bundle,
    IReadOnlyList<Containerd.Types.Mount> Rootfs,
    Bundle.BundleSpec Spec,
    string SandboxId,
    string ConfigPath,
    Stdio.StdioConfig Stdio,
    long RequestedAt);

/// <summary>
/// The pod this shim serves: its VM and its containers, under one lock that orders their creation and deletion. It
/// owns what a container takes from the pod (its rootfs and bind mounts in the pod's share, its share of the VM's
/// size) and gives it back; the VM is booted for the pod's first container and stopped with its sandbox container or
/// its last one. The processes own their own state (<see cref="InitProcess"/>, <see cref="ExecProcess"/>).
/// </summary>
public sealed partial class Pod : IAsyncDisposable
{
    private readonly ISandboxLauncher _launcher;
    private readonly IRootfsMounter _mounter;
    private readonly IEventSink _events;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Container> _containers = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly SandboxSlot _sandbox;

    /// <param name="logger">The task service's: the pod's lines are the service's to an operator.</param>
    public Pod(ISandboxLauncher launcher, IRootfsMounter mounter, IEventSink events, ILogger logger)
    {
        _launcher = launcher;
        _mounter = mounter;
        _events = events;
        _logger = logger;
        _sandbox = new SandboxSlot(logger);
    }

    /// <summary>The pod VM's state (none, booting, ready, stopping, dead).</summary>
    public SandboxState State => _sandbox.State;

    /// <summary>The VM, whatever its state; null when none.</summary>
    public ISandbox? Current => _sandbox.Current;

    public int ContainerCount => _containers.Count;

    public bool IsEmpty => _containers.IsEmpty;

    /// <exception cref="ShimException">NotFound.</exception>
    public Container Get(string id) => _containers.TryGetValue(id, out var c) ? c : throw Errors.TaskNotFound(id);

    /// <summary>The ready VM, for <paramref name="doing"/>; a dead or absent one is an error saying so.</summary>
    public ISandbox RequireReady(string doing) => _sandbox.RequireReady(doing);

    /// <summary>What a process of this pod works with: the VM's agent, the event sink, the log.</summary>
    public ProcessEnvironment Environment(ISandbox sandbox) => new(sandbox, _events, _logger);

    /// <summary>
    /// Creates a container: boots the pod's VM for its first, mounts the rootfs and binds into the share, grows the VM
    /// to the container's limits, has the agent create it and registers it. <paramref name="created"/> runs under the
    /// lock once it is registered (its TaskCreate goes out before anything else of it can). On failure nothing of it
    /// is left, nor the VM when it was booted for it or the pod holds nothing else.
    /// </summary>
    public async Task<Container> CreateContainerAsync(ContainerCreation request, Action<Container, InitProcess> created, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(created);
        var spec = request.Spec;
        await _lifecycle.WaitAsync(cancellationToken);
        try
        {
            if (_containers.ContainsKey(request.Id))
            {
                throw Errors.AlreadyExists($"task {request.Id} already exists");
            }

            if (_sandbox.Current is { } running && running.Id != request.SandboxId)
            {
                throw Errors.FailedPrecondition($"this shim serves sandbox {running.Id}, not {request.SandboxId}");
            }

            var launchedHere = false;
            if (_sandbox.State == SandboxState.None)
            {
                var sandboxTimeline = Timeline.BootTimeline.ForSandbox(request.SandboxId, _logger, request.RequestedAt);
                await _sandbox.LaunchAsync(() => _launcher.LaunchAsync(
                    new SandboxLaunchRequest(
                        request.SandboxId,
                        request.ConfigPath,
                        spec.Hostname ?? request.SandboxId,
                        spec.NetworkNamespace,
                        spec.IsSandbox(request.Id) ? spec.CgroupsPath : null,
                        sandboxTimeline),
                    cancellationToken));
                launchedHere = true;
                _ = ForwardOomEventsAsync(_sandbox.RequireReady("forward OOM events"));
            }

            var sandbox = _sandbox.RequireReady($"create container {request.Id}");
            var rootfs = sandbox.Paths.ContainerRootfs(request.Id);
            try
            {
                _mounter.Mount(request.Rootfs, Path.Combine(request.Bundle, "rootfs"), rootfs);
                var (specJson, binds) = Bundle.SharedMounts.Rewrite(spec.Json, SandboxPaths.GuestContainerDirectory(request.Id));
                foreach (var bind in binds)
                {
                    // ShareRelativePath is ours ("mounts/0-x", "../volumes/<key>-x"): resolved lexically here, so the
                    // mount guard, which refuses ".." in what it walks, sees the real place in the share.
                    _mounter.Bind(
                        bind.HostSource,
                        Path.GetFullPath(Path.Combine(sandbox.Paths.ContainerShareDirectory(request.Id), bind.ShareRelativePath)),
                        bind.IsDirectory,
                        bind.ReadOnly);
                }

                var needs = SandboxSize.FromSpec(specJson);
                await GrowAsync(sandbox, needs, cancellationToken);
                var stdio = request.Stdio;
                var agentCreated = await AgentCalls.RunAsync($"create container {request.Id}", () => sandbox.Agent.CreateContainerAsync(
                    new CreateContainerRequest
                    {
                        ContainerId = request.Id,
                        OciSpecJson = Google.Protobuf.ByteString.CopyFrom(specJson),
                        RootfsGuestPath = SandboxPaths.GuestRootfs(request.Id),
                        Terminal = stdio.Terminal,
                        Stdin = stdio.HasStdin,
                        Stdout = stdio.HasStdout,
                        Stderr = stdio.HasStderr,
                    },
                    null,
                    cancellationToken));

                var container = new Container(request.Id, request.Bundle, spec, rootfs)
                {
                    Needs = needs,
                    Timeline = Timeline.BootTimeline.ForContainer(request.Id, _logger, request.RequestedAt),
                };
                var init = InitProcess.Attach(container, stdio, (uint)sandbox.Pid, agentCreated.Pid, Environment(sandbox));
                _containers[request.Id] = container;
                created(container, init);
                return container;
            }
            catch
            {
                _containers.TryRemove(request.Id, out _);
                TryUnmount(rootfs, sandbox.Paths.ContainerShareDirectory(request.Id));
                if (launchedHere || _containers.IsEmpty)
                {
                    await _sandbox.StopAsync();
                }

                throw;
            }
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>
    /// Deletes a container's init (its exec's are the exec's own): the process's delete, then its mounts; the VM goes
    /// with the sandbox container or the pod's last one.
    /// </summary>
    public async Task<Containerd.Task.V2.DeleteResponse> DeleteContainerAsync(Container container, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(container);
        await _lifecycle.WaitAsync(cancellationToken);
        try
        {
            var response = await container.Init.DeleteAsync(cancellationToken);
            var sandbox = _sandbox.Current;
            if (sandbox is not null)
            {
                TryUnmount(container.RootfsOnHost, sandbox.Paths.ContainerShareDirectory(container.Id));
            }

            _containers.TryRemove(container.Id, out _);
            LogDeleted(_logger, container.Id);

            if (container.Id == sandbox?.Id || _containers.IsEmpty)
            {
                await _sandbox.StopAsync();
            }

            return response;
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>New limits for a container: the VM grows first when they are above what it was sized for (a VM never
    /// shrinks), then the guest applies them.</summary>
    public async Task UpdateAsync(Container container, ReadOnlyMemory<byte> resourcesJson, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(container);
        var sandbox = _sandbox.RequireReady($"update container {container.Id}");
        container.Init.CheckUpdate();
        var needs = SandboxSize.FromResources(resourcesJson.Span);
        if (needs.Vcpus > container.Needs.Vcpus || needs.MemoryMiB > container.Needs.MemoryMiB)
        {
            container.Needs = new SandboxSize(Math.Max(needs.Vcpus, container.Needs.Vcpus), Math.Max(needs.MemoryMiB, container.Needs.MemoryMiB));
            await GrowAsync(sandbox, default, cancellationToken);
        }

        await container.Init.UpdateAsync(resourcesJson, cancellationToken);
    }

    /// <summary>Tears everything down: the shim is exiting (SIGTERM, or nobody connected).</summary>
    public async ValueTask DisposeAsync()
    {
        // After a Create that is still booting the VM: the boot is bounded, and its VM must go too.
        await _lifecycle.WaitAsync();
        try
        {
            foreach (var container in _containers.Values)
            {
                foreach (var process in container.Execs.Values.Cast<ShimProcess>().Append(container.Init))
                {
                    if (process.Io is not null)
                    {
                        await process.Io.DisposeAsync();
                    }
                }

                TryUnmount(container.RootfsOnHost, Path.GetDirectoryName(container.RootfsOnHost)!);
            }

            _containers.Clear();
            await _sandbox.StopAsync();
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>
    /// Forwards the agent's OOM events as they happen (the guest queues one per cgroup OOM), so CRI records
    /// OOMKilled even when the exit races the event; the exit watcher sends one only if none went out.
    /// </summary>
    private async Task ForwardOomEventsAsync(ISandbox sandbox)
    {
        try
        {
            while (true)
            {
                var oom = await sandbox.Agent.GetOomEventAsync(new GetOomEventRequest(), null, CancellationToken.None);
                if (_containers.TryGetValue(oom.ContainerId, out var container) && container.Init.State is not (ProcessStateKind.Stopped or ProcessStateKind.Deleted))
                {
                    container.OomFromQueue(() =>
                    {
                        _events.Publish(EventTopics.TaskOom, new TaskOOM { ContainerId = oom.ContainerId });
                        LogOom(_logger, oom.ContainerId);
                    });
                }
            }
        }
        catch (Exception e) when (e is TtrpcException or ObjectDisposedException or IOException)
        {
            // The agent connection ended with the VM.
            LogOomForwardingEnded(_logger, sandbox.Id, e.Message);
        }
    }

    /// <summary>Sizes the VM as Kata does: its boot size plus every container's limits (and <paramref name="extra"/>
    /// for one not registered yet). Hotplug failing is logged, not fatal: the guest cgroups still hold the limits.</summary>
    private async Task GrowAsync(ISandbox sandbox, SandboxSize extra, CancellationToken cancellationToken)
    {
        var wanted = _containers.Values.Aggregate(sandbox.BootSize + extra, (size, c) => size + c.Needs);
        if (wanted.Vcpus <= sandbox.Size.Vcpus && wanted.MemoryMiB <= sandbox.Size.MemoryMiB)
        {
            return;
        }

        try
        {
            await sandbox.GrowAsync(wanted, cancellationToken);
        }
        catch (Exception e) when (e is HypervisorException or TtrpcException)
        {
            LogGrowFailed(_logger, sandbox.Id, wanted.Vcpus, wanted.MemoryMiB, e.Message);
        }
    }

    private void TryUnmount(string rootfs, string shareDirectory)
    {
        try
        {
            _mounter.Unmount(rootfs);
            _mounter.RemoveTree(shareDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogUnmountFailed(_logger, rootfs, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id} deleted")]
    private static partial void LogDeleted(ILogger logger, string id);

    [LoggerMessage(Level = LogLevel.Warning, Message = "container {Id}: out of memory (TaskOOM published)")]
    private static partial void LogOom(ILogger logger, string id);

    [LoggerMessage(Level = LogLevel.Debug, Message = "sandbox {SandboxId}: OOM event forwarding ended: {Reason}")]
    private static partial void LogOomForwardingEnded(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot unmount {Path}: {Reason}")]
    private static partial void LogUnmountFailed(ILogger logger, string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: could not grow the VM to {Vcpus} vCPUs / {MemoryMiB} MiB: {Reason}")]
    private static partial void LogGrowFailed(ILogger logger, string sandboxId, int vcpus, int memoryMiB, string reason);
}
