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

    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);
    private const uint SigKill = 9;

    private readonly ShimContext _context;
    private readonly ISandboxLauncher _launcher;
    private readonly IRootfsMounter _mounter;
    private readonly IEventSink _events;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Container> _containers = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly TaskCompletionSource _shutdown = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ISandbox? _sandbox;

    public TaskService(ShimContext context, ISandboxLauncher launcher, IRootfsMounter mounter, IEventSink events, ILoggerFactory loggerFactory)
    {
        _context = context;
        _launcher = launcher;
        _mounter = mounter;
        _events = events;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<TaskService>();
    }

    /// <summary>Completes when the shim should exit: Shutdown with no container left.</summary>
    public Task ShutdownRequested => _shutdown.Task;

    public int ContainerCount => _containers.Count;

    public async Task<CreateTaskResponse> CreateAsync(CreateTaskRequest request, CancellationToken cancellationToken)
    {
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

            if (_sandbox is not null && _sandbox.Id != sandboxId)
            {
                throw Errors.FailedPrecondition($"this shim serves sandbox {_sandbox.Id}, not {sandboxId}");
            }

            var launchedHere = false;
            if (_sandbox is null)
            {
                _sandbox = await _launcher.LaunchAsync(
                    new SandboxLaunchRequest(sandboxId, configPath, spec.Hostname ?? sandboxId, spec.NetworkNamespace, spec.IsSandbox(request.Id) ? spec.CgroupsPath : null),
                    cancellationToken);
                launchedHere = true;
                _ = WatchSandboxAsync(_sandbox);
            }

            var sandbox = _sandbox;
            var rootfs = sandbox.Paths.ContainerRootfs(request.Id);
            try
            {
                _mounter.Mount(request.Rootfs, Path.Combine(request.Bundle, "rootfs"), rootfs);
                var (specJson, binds) = SharedMounts.Rewrite(spec.Json, SandboxPaths.GuestContainerDirectory(request.Id));
                foreach (var bind in binds)
                {
                    _mounter.Bind(
                        bind.HostSource,
                        Path.Combine(sandbox.Paths.ContainerShareDirectory(request.Id), bind.ShareRelativePath),
                        bind.IsDirectory,
                        bind.ReadOnly);
                }

                var needs = SandboxSize.FromSpec(specJson);
                await GrowAsync(sandbox, needs, cancellationToken);
                var stdio = new StdioConfig(request.Stdin, request.Stdout, request.Stderr, request.Terminal);
                var created = await sandbox.Agent.CreateContainerAsync(
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
                    cancellationToken);

                var init = new ShimProcess(request.Id, string.Empty, stdio, (uint)sandbox.Pid) { GuestPid = created.Pid };
                var container = new Container(request.Id, request.Bundle, spec, init, rootfs);
                container.Needs = needs;
                init.Io = new StdioForwarder(stdio, new AgentStdio(sandbox.Agent, request.Id, string.Empty), _logger, request.Id);
                init.Io.Start();
                _containers[request.Id] = container;
                _ = WatchExitAsync(sandbox, container, init);

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
                return new CreateTaskResponse { Pid = init.Pid };
            }
            catch
            {
                _containers.TryRemove(request.Id, out _);
                TryUnmount(rootfs, sandbox.Paths.ContainerShareDirectory(request.Id));
                if (launchedHere || _containers.IsEmpty)
                {
                    await StopSandboxAsync();
                }

                throw;
            }
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    public async Task<StartResponse> StartAsync(StartRequest request, CancellationToken cancellationToken)
    {
        var container = Get(request.Id);
        var process = container.Process(request.ExecId);
        var sandbox = RequireSandbox();
        process.Check(s => s.Start());
        try
        {
            if (process.IsInit)
            {
                await sandbox.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = request.Id }, null, cancellationToken);
                process.Transition(s => s.Start());
                _events.Publish(EventTopics.TaskStart, new TaskStart { ContainerId = request.Id, Pid = process.Pid });
            }
            else
            {
                var exec = await sandbox.Agent.ExecProcessAsync(
                    new Agent.Protocol.V1.ExecProcessRequest
                    {
                        ContainerId = request.Id,
                        ExecId = request.ExecId,
                        ProcessJson = ByteString.CopyFrom(process.ExecSpec ?? []),
                        Terminal = process.Stdio.Terminal,
                        Stdin = process.Stdio.HasStdin,
                        Stdout = process.Stdio.HasStdout,
                        Stderr = process.Stdio.HasStderr,
                    },
                    null,
                    cancellationToken);
                process.GuestPid = exec.Pid;
                process.Io = new StdioForwarder(
                    process.Stdio, new AgentStdio(sandbox.Agent, request.Id, request.ExecId), _logger, $"{request.Id}/{request.ExecId}");
                process.Io.Start();
                process.Transition(s => s.Start());
                _events.Publish(EventTopics.TaskExecStarted, new TaskExecStarted
                {
                    ContainerId = request.Id,
                    ExecId = request.ExecId,
                    Pid = process.Pid,
                });
                _ = WatchExitAsync(sandbox, container, process);
            }
        }
        finally
        {
            process.SettleStart();
        }

        LogStarted(_logger, request.Id, request.ExecId);
        return new StartResponse { Pid = process.Pid };
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
        var process = Get(request.Id).Process(request.ExecId);
        var sandbox = RequireSandbox();
        if (!request.All)
        {
            process.Check(s => s.CheckKill());
        }

        try
        {
            await sandbox.Agent.SignalProcessAsync(
                new SignalProcessRequest { ContainerId = request.Id, ExecId = request.ExecId, Signal = request.Signal, All = request.All },
                null,
                cancellationToken);
        }
        catch (Agent.Protocol.AgentDeadlineException e) when (request.Signal == SigKill && process.IsInit)
        {
            // A guest that does not answer can run nothing: SIGKILL of a container must still end it, and only
            // the VM's end can. Every process of the pod then exits, reported by its watcher.
            await sandbox.TerminateVmAsync($"SIGKILL of {request.Id}: {e.Message}");
        }
        if (process.State == ProcessStateKind.Created)
        {
            process.SettleStart();
        }

        LogKilled(_logger, request.Id, request.ExecId, request.Signal);
        return new Empty();
    }

    public async Task<Containerd.Task.V2.DeleteResponse> DeleteAsync(DeleteRequest request, CancellationToken cancellationToken)
    {
        var container = Get(request.Id);
        var process = container.Process(request.ExecId);
        process.Check(s => s.Delete());
        var sandbox = RequireSandbox();
        if (!process.IsInit)
        {
            if (process.Io is not null)
            {
                await process.Io.DisposeAsync();
            }

            process.Transition(s => s.Delete());
            container.Execs.TryRemove(request.ExecId, out _);
            return DeleteResponseOf(process);
        }

        await _lifecycle.WaitAsync(cancellationToken);
        try
        {
            if (process.State == ProcessStateKind.Created)
            {
                process.SettleStart();
            }

            try
            {
                // Removing a never-started container kills its init; its exit is recorded by the watcher.
                await sandbox.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = request.Id }, null, cancellationToken);
            }
            catch (TtrpcException e) when (e.Code is TtrpcStatusCode.NotFound or TtrpcStatusCode.Unavailable)
            {
                LogAgentRemoveFailed(_logger, request.Id, e.Message);
            }

            await process.Exited.WaitAsync(DrainTimeout, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (!process.Exited.IsCompleted)
            {
                process.RecordExit(128 + 9, DateTimeOffset.UtcNow);
            }

            if (process.Io is not null)
            {
                await process.Io.DisposeAsync();
            }

            TryUnmount(container.RootfsOnHost, sandbox.Paths.ContainerShareDirectory(request.Id));
            process.Transition(s => s.Delete());
            _containers.TryRemove(request.Id, out _);
            _events.Publish(EventTopics.TaskDelete, new TaskDelete
            {
                ContainerId = request.Id,
                Pid = process.Pid,
                ExitStatus = process.ExitStatus,
                ExitedAt = Timestamp.FromDateTimeOffset(process.ExitedAt ?? DateTimeOffset.UtcNow),
            });
            LogDeleted(_logger, request.Id);

            // The pod's VM goes with its sandbox container, or with the last container.
            if (request.Id == sandbox.Id || _containers.IsEmpty)
            {
                await StopSandboxAsync();
            }

            return DeleteResponseOf(process);
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
        if (container.Init.State is not (ProcessStateKind.Running or ProcessStateKind.Paused or ProcessStateKind.Created))
        {
            throw Errors.FailedPrecondition($"cannot exec in a {container.Init.State.ToString().ToLowerInvariant()} task");
        }

        var spec = request.Spec?.Value.ToByteArray() ?? throw Errors.InvalidArgument("exec needs a process spec");
        var exec = new ShimProcess(request.Id, request.ExecId, new StdioConfig(request.Stdin, request.Stdout, request.Stderr, request.Terminal), container.Init.Pid, spec);
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
        var list = await RequireSandbox().Agent.ListProcessesAsync(new ContainerRequest { ContainerId = request.Id }, null, cancellationToken);
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
        var process = Get(request.Id).Init;
        process.Check(s => s.Pause());
        await RequireSandbox().Agent.PauseContainerAsync(new ContainerRequest { ContainerId = request.Id }, null, cancellationToken);
        process.Transition(s => s.Pause());
        _events.Publish(EventTopics.TaskPaused, new TaskPaused { ContainerId = request.Id });
        return new Empty();
    }

    public async Task<Empty> ResumeAsync(ResumeRequest request, CancellationToken cancellationToken)
    {
        var process = Get(request.Id).Init;
        process.Check(s => s.Resume());
        await RequireSandbox().Agent.ResumeContainerAsync(new ContainerRequest { ContainerId = request.Id }, null, cancellationToken);
        process.Transition(s => s.Resume());
        _events.Publish(EventTopics.TaskResumed, new TaskResumed { ContainerId = request.Id });
        return new Empty();
    }

    public async Task<Empty> ResizePtyAsync(ResizePtyRequest request, CancellationToken cancellationToken)
    {
        var process = Get(request.Id).Process(request.ExecId);
        if (!process.Stdio.Terminal)
        {
            throw Errors.FailedPrecondition($"process {process.EventId} has no terminal");
        }

        await RequireSandbox().Agent.TtyWinResizeAsync(
            new TtyWinResizeRequest { ContainerId = request.Id, ExecId = request.ExecId, Rows = request.Height, Cols = request.Width },
            null,
            cancellationToken);
        return new Empty();
    }

    public async Task<Empty> CloseIOAsync(CloseIORequest request, CancellationToken cancellationToken)
    {
        var process = Get(request.Id).Process(request.ExecId);
        if (request.Stdin && process.Io is not null)
        {
            await process.Io.CloseStdinAsync(cancellationToken);
        }

        return new Empty();
    }

    public async Task<Empty> UpdateAsync(UpdateTaskRequest request, CancellationToken cancellationToken)
    {
        var container = Get(request.Id);
        var resources = request.Resources?.Value ?? throw Errors.InvalidArgument("update needs resources");
        var sandbox = RequireSandbox();
        var needs = SandboxSize.FromResources(resources.Span);
        if (needs.Vcpus > container.Needs.Vcpus || needs.MemoryMiB > container.Needs.MemoryMiB)
        {
            // Grow first, so the raised limit has somewhere to go; a VM never shrinks.
            container.Needs = new SandboxSize(Math.Max(needs.Vcpus, container.Needs.Vcpus), Math.Max(needs.MemoryMiB, container.Needs.MemoryMiB));
            await GrowAsync(sandbox, default, cancellationToken);
        }

        await sandbox.Agent.UpdateContainerAsync(
            new UpdateContainerRequest { ContainerId = request.Id, ResourcesJson = resources }, null, cancellationToken);
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
        var stats = await RequireSandbox().Agent.StatsContainerAsync(new ContainerRequest { ContainerId = request.Id }, null, cancellationToken);
        return new StatsResponse { Stats = CgroupMetrics.ToAny(stats) };
    }

    /// <summary>Never blocks: containerd calls it while other calls are in flight.</summary>
    public Task<ConnectResponse> ConnectAsync(ConnectRequest request)
    {
        var sandbox = _sandbox;
        return Task.FromResult(new ConnectResponse
        {
            ShimPid = (uint)Environment.ProcessId,
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
        foreach (var container in _containers.Values)
        {
            foreach (var process in container.Execs.Values.Append(container.Init))
            {
                if (process.Io is not null)
                {
                    await process.Io.DisposeAsync();
                }
            }

            TryUnmount(container.RootfsOnHost, Path.GetDirectoryName(container.RootfsOnHost)!);
        }

        _containers.Clear();
        await StopSandboxAsync();
    }

    private async Task WatchExitAsync(ISandbox sandbox, Container container, ShimProcess process)
    {
        uint status;
        try
        {
            var exit = await sandbox.Agent.WaitProcessAsync(
                new WaitProcessRequest { ContainerId = process.ContainerId, ExecId = process.ExecId }, null, CancellationToken.None);
            status = exit.ExitStatus;
            if (exit.OomKilled)
            {
                _events.Publish(EventTopics.TaskOom, new TaskOOM { ContainerId = process.ContainerId });
            }
        }
        catch (Exception e)
        {
            // The agent is gone (the VM died): the process is gone with it. The channel closes as QEMU exits, a moment
            // before the exit is reaped: wait for it briefly, so the log says why the VM died (a guest panic's line).
            await sandbox.Exited.WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            LogLostProcess(_logger, process.EventId, sandbox.ExitReason is { } why ? $"{e.Message}; the VM exited: {why}" : e.Message);
            status = 255;
        }

        var exitedAt = DateTimeOffset.UtcNow;
        if (process.Io is not null)
        {
            await process.Io.OutputDrained.WaitAsync(DrainTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        if (process.IsInit)
        {
            // An init's exit is published only after its execs' exits.
            var execs = container.Execs.Values.Where(e => e.State != ProcessStateKind.Created).Select(e => e.Exited);
            await Task.WhenAll(execs).WaitAsync(DrainTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await process.StartSettled;
        // Queued before RecordExit completes Exited: the init's watcher waits on its execs' Exited, and would
        // otherwise race this thread to the queue (seen: an init's /tasks/exit before its exec's under kill --all).
        _events.Publish(EventTopics.TaskExit, new TaskExit
        {
            ContainerId = process.ContainerId,
            Id = process.EventId,
            Pid = process.Pid,
            ExitStatus = status,
            ExitedAt = Timestamp.FromDateTimeOffset(exitedAt),
        });
        process.RecordExit(status, exitedAt);
        LogExited(_logger, process.EventId, status);
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

    private async Task WatchSandboxAsync(ISandbox sandbox)
    {
        await sandbox.Exited.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (ReferenceEquals(_sandbox, sandbox))
        {
            LogVmGone(_logger, sandbox.Id, sandbox.ExitReason ?? "reason unknown");
        }
    }

    private async Task StopSandboxAsync()
    {
        var sandbox = Interlocked.Exchange(ref _sandbox, null);
        if (sandbox is not null)
        {
            await sandbox.StopAsync(CancellationToken.None);
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

    private Container Get(string id) => _containers.TryGetValue(id, out var c) ? c : throw Errors.TaskNotFound(id);

    private ISandbox RequireSandbox() => _sandbox ?? throw Errors.FailedPrecondition("the sandbox VM is not running");

    private static Containerd.Task.V2.DeleteResponse DeleteResponseOf(ShimProcess process) => new()
    {
        Pid = process.Pid,
        ExitStatus = process.ExitStatus,
        ExitedAt = Timestamp.FromDateTimeOffset(process.ExitedAt ?? DateTimeOffset.UtcNow),
    };

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

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id} exec '{ExecId}' started")]
    private static partial void LogStarted(ILogger logger, string id, string execId);

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id} exec '{ExecId}' sent signal {Signal}")]
    private static partial void LogKilled(ILogger logger, string id, string execId, uint signal);

    [LoggerMessage(Level = LogLevel.Information, Message = "process {Id} exited with status {Status}")]
    private static partial void LogExited(ILogger logger, string id, uint status);

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id} deleted")]
    private static partial void LogDeleted(ILogger logger, string id);

    [LoggerMessage(Level = LogLevel.Warning, Message = "lost track of process {Id}: {Reason}")]
    private static partial void LogLostProcess(ILogger logger, string id, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "agent could not remove container {Id}: {Reason}")]
    private static partial void LogAgentRemoveFailed(ILogger logger, string id, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot unmount {Path}: {Reason}")]
    private static partial void LogUnmountFailed(ILogger logger, string path, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "sandbox {SandboxId}: the VM exited: {Reason}")]
    private static partial void LogVmGone(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: could not grow the VM to {Vcpus} vCPUs / {MemoryMiB} MiB: {Reason}")]
    private static partial void LogGrowFailed(ILogger logger, string sandboxId, int vcpus, int memoryMiB, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "shutdown requested with {Count} containers left")]
    private static partial void LogShutdown(ILogger logger, int count);
}
