using System.Collections.Concurrent;
using Containerd.Events;
using Containerd.Task.V2;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Shim.Bundle;
using ShimV2.Shim.Config;
using ShimV2.Shim.Events;
using ShimV2.Shim.Processes;
using ShimV2.Shim.Sandbox;
using ShimV2.Shim.Stdio;
using ShimV2.Shim.Timeline;
using ShimV2.Hypervisor;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Tasks;

/// <summary>
/// containerd's task semantics over one pod VM: processes, their state machines, stdio and the event order
/// create → start → exit → delete (exec-added → exec-started → exit; an init's exit after its execs').
/// </summary>
public sealed partial class TaskService : IAsyncDisposable
{
    public const string Version = "0.1.0";
    public const string DefaultConfigPath = "/etc/containerd-shim-csharp/qemu.json";

    private readonly ShimContext _context;
    private readonly ISandboxLauncher _launcher;
    private readonly IRootfsMounter _mounter;
    private readonly IEventSink _events;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Container> _containers = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly TaskCompletionSource _shutdown = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SandboxSlot _sandbox;

    public TaskService(ShimContext context, ISandboxLauncher launcher, IRootfsMounter mounter, IEventSink events, ILoggerFactory loggerFactory)
    {
        _context = context;
        _launcher = launcher;
        _mounter = mounter;
        _events = events;
        _logger = loggerFactory.CreateLogger<TaskService>();
        _sandbox = new SandboxSlot(_logger);
    }

    /// <summary>Completes when the shim should exit: Shutdown with no container left.</summary>
    public Task ShutdownRequested => _shutdown.Task;

    public int ContainerCount => _containers.Count;

    /// <summary>The pod VM's state (none, booting, ready, stopping, dead).</summary>
    public SandboxState SandboxState => _sandbox.State;

    public async Task<CreateTaskResponse> CreateAsync(CreateTaskRequest request, CancellationToken cancellationToken)
    {
        // The origin of this container's timeline and, when this Create launches the VM, of the sandbox's: the
        // sandbox's own container counts from the moment the shim began creating the sandbox.
        var requestedAt = TimeProvider.System.GetTimestamp();
        ValidateId(request.Id);
        if (request.Checkpoint.Length > 0)
        {
            throw Errors.Unimplemented("checkpoint restore is not supported by this runtime");
        }

        var spec = BundleSpec.Load(request.Bundle);
        if (spec.RefusalReason is { } refusal)
        {
            throw Errors.FailedPrecondition(refusal);
        }

        var sandboxId = spec.SandboxId(request.Id);
        var configPath = RuntimeOptions.FromAny(request.Options).ConfigPath ?? _context.DefaultConfigPath ?? DefaultConfigPath;

        await _lifecycle.WaitAsync(cancellationToken);
        try
        {
            if (_containers.ContainsKey(request.Id))
            {
                throw Errors.AlreadyExists($"task {request.Id} already exists");
            }

            if (_sandbox.Current is { } running && running.Id != sandboxId)
            {
                throw Errors.FailedPrecondition($"this shim serves sandbox {running.Id}, not {sandboxId}");
            }

            var launchedHere = false;
            if (_sandbox.State == SandboxState.None)
            {
                var sandboxTimeline = BootTimeline.ForSandbox(sandboxId, _logger, requestedAt);
                await _sandbox.LaunchAsync(() => _launcher.LaunchAsync(
                    new SandboxLaunchRequest(
                        sandboxId, configPath, spec.Hostname ?? sandboxId, spec.NetworkNamespace, spec.IsSandbox(request.Id) ? spec.CgroupsPath : null, sandboxTimeline),
                    cancellationToken));
                launchedHere = true;
                _ = ForwardOomEventsAsync(_sandbox.RequireReady("forward OOM events"));
            }

            var sandbox = _sandbox.RequireReady($"create container {request.Id}");
            var rootfs = sandbox.Paths.ContainerRootfs(request.Id);
            try
            {
                _mounter.Mount(request.Rootfs, Path.Combine(request.Bundle, "rootfs"), rootfs);
                var (specJson, binds) = SharedMounts.Rewrite(spec.Json, SandboxPaths.GuestContainerDirectory(request.Id));
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
                var stdio = new StdioConfig(request.Stdin, request.Stdout, request.Stderr, request.Terminal);
                var created = await AgentCalls.RunAsync($"create container {request.Id}", () => sandbox.Agent.CreateContainerAsync(
                    new CreateContainerRequest
                    {
                        ContainerId = request.Id,
                        OciSpecJson = ByteString.CopyFrom(specJson),
                        RootfsGuestPath = SandboxPaths.GuestRootfs(request.Id),
                        Terminal = request.Terminal,
                        Stdin = stdio.HasStdin,
                        Stdout = stdio.HasStdout,
                        Stderr = stdio.HasStderr,
                    },
                    null,
                    cancellationToken));

                var container = new Container(request.Id, request.Bundle, spec, rootfs) { Needs = needs, Timeline = BootTimeline.ForContainer(request.Id, _logger, requestedAt) };
                var init = InitProcess.Attach(container, stdio, (uint)sandbox.Pid, created.Pid, Environment(sandbox));
                _containers[request.Id] = container;
                _events.Publish(EventTopics.TaskCreate, new TaskCreate
                {
                    ContainerId = request.Id,
                    Bundle = request.Bundle,
                    Rootfs = { request.Rootfs },
                    Io = new TaskIO { Stdin = request.Stdin, Stdout = request.Stdout, Stderr = request.Stderr, Terminal = request.Terminal },
                    Checkpoint = request.Checkpoint,
                    Pid = init.Pid,
                });
                LogCreated(_logger, request.Id, sandboxId, created.Pid);
                container.Timeline.Mark(BootPhase.Created);
                return new CreateTaskResponse { Pid = init.Pid };
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
        catch (Exception) when (cancellationToken.IsCancellationRequested && _containers.IsEmpty)
        {
            // containerd gave up on this Create (it went away, e.g. restarted, or the call's deadline passed) and the
            // shim serves nothing else. No one will send it Delete or Shutdown: a restarted containerd reconnects to
            // a shim without a task and keeps it forever. Exiting lets containerd clean up as after a dead shim.
            LogCreateCancelled(_logger, request.Id);
            _shutdown.TrySetResult();
            throw;
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    public async Task<StartResponse> StartAsync(StartRequest request, CancellationToken cancellationToken)
    {
        var process = Get(request.Id).Process(request.ExecId);
        _sandbox.RequireReady(process.IsInit ? $"start container {request.Id}" : $"start exec {request.ExecId} in container {request.Id}");

        var pid = await process.StartAsync(cancellationToken);
        if (process.IsInit)
        {
            Get(request.Id).Timeline?.Mark(BootPhase.Started);
        }

        return new StartResponse { Pid = pid };
    }

    public Task<StateResponse> StateAsync(StateRequest request)
    {
        var container = Get(request.Id);
        var process = container.Process(request.ExecId);
        var response = new StateResponse
        {
            Id = process.EventId,
            Bundle = container.Bundle,
            Pid = process.Pid,
            Status = ToStatus(process.State),
            Stdin = process.Stdio.Stdin,
            Stdout = process.Stdio.Stdout,
            Stderr = process.Stdio.Stderr,
            Terminal = process.Stdio.Terminal,
            ExitStatus = process.ExitStatus,
            ExecId = request.ExecId,
        };
        if (process.ExitedAt is { } exitedAt)
        {
            response.ExitedAt = Timestamp.FromDateTimeOffset(exitedAt);
        }

        return Task.FromResult(response);
    }

    public async Task<WaitResponse> WaitAsync(WaitRequest request, CancellationToken cancellationToken)
    {
        var process = Get(request.Id).Process(request.ExecId);
        await process.Exited.WaitAsync(cancellationToken);
        return new WaitResponse
        {
            ExitStatus = process.ExitStatus,
            ExitedAt = Timestamp.FromDateTimeOffset(process.ExitedAt ?? DateTimeOffset.UtcNow),
        };
    }

    public async Task<Empty> KillAsync(KillRequest request, CancellationToken cancellationToken)
    {
        await Get(request.Id).Process(request.ExecId).KillAsync(request.Signal, request.All, cancellationToken);
        return new Empty();
    }

    public async Task<Containerd.Task.V2.DeleteResponse> DeleteAsync(DeleteRequest request, CancellationToken cancellationToken)
    {
        var container = Get(request.Id);
        if (container.Process(request.ExecId) is ExecProcess exec)
        {
            return await exec.DeleteAsync(cancellationToken);
        }

        await _lifecycle.WaitAsync(cancellationToken);
        try
        {
            var response = await container.Init.DeleteAsync(cancellationToken);
            var sandbox = _sandbox.Current;
            if (sandbox is not null)
            {
                TryUnmount(container.RootfsOnHost, sandbox.Paths.ContainerShareDirectory(request.Id));
            }

            _containers.TryRemove(request.Id, out _);
            LogDeleted(_logger, request.Id);

            // The pod's VM goes with its sandbox container, or with the last container.
            if (request.Id == sandbox?.Id || _containers.IsEmpty)
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

    public Task<Empty> ExecAsync(Containerd.Task.V2.ExecProcessRequest request)
    {
        var container = Get(request.Id);
        ValidateId(request.ExecId);
        var sandbox = _sandbox.RequireReady($"exec {request.ExecId} in container {request.Id}");
        if (container.Init.State is not (ProcessStateKind.Running or ProcessStateKind.Paused or ProcessStateKind.Created))
        {
            throw Errors.FailedPrecondition($"cannot exec in a {container.Init.State.ToString().ToLowerInvariant()} task");
        }

        var spec = request.Spec?.Value.ToByteArray() ?? throw Errors.InvalidArgument("exec needs a process spec");
        var stdio = new StdioConfig(request.Stdin, request.Stdout, request.Stderr, request.Terminal);
        var exec = new ExecProcess(container, request.ExecId, stdio, container.Init.Pid, spec, Environment(sandbox));
        if (!container.Execs.TryAdd(request.ExecId, exec))
        {
            throw Errors.AlreadyExists($"id {request.ExecId}: already exists");
        }

        _events.Publish(EventTopics.TaskExecAdded, new TaskExecAdded { ContainerId = request.Id, ExecId = request.ExecId });
        return Task.FromResult(new Empty());
    }

    public async Task<PidsResponse> PidsAsync(PidsRequest request, CancellationToken cancellationToken)
    {
        Get(request.Id);
        var doing = $"list the processes of container {request.Id}";
        var agent = _sandbox.RequireReady(doing).Agent;
        var list = await AgentCalls.RunAsync(doing, () => agent.ListProcessesAsync(new ContainerRequest { ContainerId = request.Id }, null, cancellationToken));
        var response = new PidsResponse();
        foreach (var p in list.Processes)
        {
            var info = new Containerd.V1.Types.ProcessInfo { Pid = p.Pid };
            if (p.ExecId.Length > 0)
            {
                // As runc's shim does: ctr task ps shows which exec a pid belongs to.
                var details = new Containerd.Runc.V1.ProcessDetails { ExecId = p.ExecId };
                info.Info = new Any { TypeUrl = Containerd.Runc.V1.ProcessDetails.Descriptor.FullName, Value = details.ToByteString() };
            }

            response.Processes.Add(info);
        }

        return response;
    }

    public async Task<Empty> PauseAsync(PauseRequest request, CancellationToken cancellationToken)
    {
        await Get(request.Id).Init.PauseAsync(cancellationToken);
        return new Empty();
    }

    public async Task<Empty> ResumeAsync(ResumeRequest request, CancellationToken cancellationToken)
    {
        await Get(request.Id).Init.ResumeAsync(cancellationToken);
        return new Empty();
    }

    public async Task<Empty> ResizePtyAsync(ResizePtyRequest request, CancellationToken cancellationToken)
    {
        await Get(request.Id).Process(request.ExecId).ResizePtyAsync(request.Width, request.Height, cancellationToken);
        return new Empty();
    }

    public async Task<Empty> CloseIOAsync(CloseIORequest request, CancellationToken cancellationToken)
    {
        var process = Get(request.Id).Process(request.ExecId);
        if (request.Stdin)
        {
            await process.CloseStdinAsync(cancellationToken);
        }

        return new Empty();
    }

    public async Task<Empty> UpdateAsync(UpdateTaskRequest request, CancellationToken cancellationToken)
    {
        var container = Get(request.Id);
        var resources = request.Resources?.Value ?? throw Errors.InvalidArgument("update needs resources");
        var sandbox = _sandbox.RequireReady($"update container {request.Id}");
        container.Init.CheckUpdate();
        var needs = SandboxSize.FromResources(resources.Span);
        if (needs.Vcpus > container.Needs.Vcpus || needs.MemoryMiB > container.Needs.MemoryMiB)
        {
            // Grow first, so the raised limit has somewhere to go; a VM never shrinks.
            container.Needs = new SandboxSize(Math.Max(needs.Vcpus, container.Needs.Vcpus), Math.Max(needs.MemoryMiB, container.Needs.MemoryMiB));
            await GrowAsync(sandbox, default, cancellationToken);
        }

        await container.Init.UpdateAsync(resources.Memory, cancellationToken);
        return new Empty();
    }

    public Task<Empty> CheckpointAsync(CheckpointTaskRequest request)
    {
        Get(request.Id);
        throw Errors.Unimplemented("checkpoint is not supported by this runtime");
    }

    public async Task<StatsResponse> StatsAsync(StatsRequest request, CancellationToken cancellationToken)
    {
        Get(request.Id);
        var doing = $"read the stats of container {request.Id}";
        var agent = _sandbox.RequireReady(doing).Agent;
        var stats = await AgentCalls.RunAsync(doing, () => agent.StatsContainerAsync(new ContainerRequest { ContainerId = request.Id }, null, cancellationToken));
        return new StatsResponse { Stats = CgroupMetrics.ToAny(stats) };
    }

    /// <summary>Never blocks: containerd calls it while other calls are in flight.</summary>
    public Task<ConnectResponse> ConnectAsync(ConnectRequest request)
    {
        var sandbox = _sandbox.Current;
        return Task.FromResult(new ConnectResponse
        {
            ShimPid = (uint)System.Environment.ProcessId,
            TaskPid = sandbox is null ? 0u : (uint)sandbox.Pid,
            Version = Version,
        });
    }

    public Task<Empty> ShutdownAsync(ShutdownRequest request)
    {
        if (request.Now || _containers.IsEmpty)
        {
            LogShutdown(_logger, _containers.Count);
            _shutdown.TrySetResult();
        }

        return Task.FromResult(new Empty());
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

    private ProcessEnvironment Environment(ISandbox sandbox) => new(sandbox, _events, _logger);

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

    private Container Get(string id) => _containers.TryGetValue(id, out var c) ? c : throw Errors.TaskNotFound(id);

    private static Containerd.V1.Types.Status ToStatus(ProcessStateKind state) => state switch
    {
        ProcessStateKind.Created => Containerd.V1.Types.Status.Created,
        ProcessStateKind.Running => Containerd.V1.Types.Status.Running,
        ProcessStateKind.Paused => Containerd.V1.Types.Status.Paused,
        ProcessStateKind.Stopped => Containerd.V1.Types.Status.Stopped,
        _ => Containerd.V1.Types.Status.Unknown,
    };

    private static void ValidateId(string id)
    {
        if (id.Length == 0 || id.Length > 255 || id.Contains('/', StringComparison.Ordinal) || id is "." or ".."
            || id.Any(c => char.IsControl(c) || char.IsWhiteSpace(c)))
        {
            throw Errors.InvalidArgument($"invalid id \"{id}\"");
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id} created in sandbox {SandboxId}, guest pid {GuestPid}")]
    private static partial void LogCreated(ILogger logger, string id, string sandboxId, uint guestPid);

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

    [LoggerMessage(Level = LogLevel.Warning, Message = "the create of {Id} was cancelled by its caller and this shim holds no other container: shutting down")]
    private static partial void LogCreateCancelled(ILogger logger, string id);

    [LoggerMessage(Level = LogLevel.Information, Message = "shutdown requested with {Count} containers left")]
    private static partial void LogShutdown(ILogger logger, int count);
}
