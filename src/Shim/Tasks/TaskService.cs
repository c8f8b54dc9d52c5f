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

namespace ShimV2.Shim.Tasks;

/// <summary>
/// containerd's task API over one pod (<see cref="Pod"/>: its VM, containers and their host resources): each call
/// looks up the container or process, asks it to do the step (the process checks its own state under its own lock:
/// <see cref="ShimProcess"/>) and publishes what the step means to containerd. Event order (create → start → exit →
/// delete; exec-added → exec-started → exit; an init's exit after its execs') is kept by the processes and the one
/// ordered publisher.
/// </summary>
public sealed partial class TaskService : IAsyncDisposable
{
    public const string Version = "0.1.0";
    public const string DefaultConfigPath = "/etc/containerd-shim-csharp/qemu.json";

    private readonly ShimContext _context;
    private readonly IEventSink _events;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource _shutdown = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Pod _pod;

    public TaskService(ShimContext context, ISandboxLauncher launcher, IRootfsMounter mounter, IEventSink events, ILoggerFactory loggerFactory)
    {
        _context = context;
        _events = events;
        _logger = loggerFactory.CreateLogger<TaskService>();
        _pod = new Pod(launcher, mounter, events, _logger);
    }

    /// <summary>Completes when the shim should exit: Shutdown with no container left.</summary>
    public Task ShutdownRequested => _shutdown.Task;

    public int ContainerCount => _pod.ContainerCount;

    /// <summary>The pod VM's state (none, booting, ready, stopping, dead).</summary>
    public SandboxState SandboxState => _pod.State;

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

        var creation = new ContainerCreation(
            request.Id,
            request.Bundle,
            request.Rootfs,
            spec,
            spec.SandboxId(request.Id),
            RuntimeOptions.FromAny(request.Options).ConfigPath ?? _context.DefaultConfigPath ?? DefaultConfigPath,
            new StdioConfig(request.Stdin, request.Stdout, request.Stderr, request.Terminal),
            requestedAt);
        try
        {
            var container = await _pod.CreateContainerAsync(creation, (container, init) =>
            {
                _events.Publish(EventTopics.TaskCreate, new TaskCreate
                {
                    ContainerId = request.Id,
                    Bundle = request.Bundle,
                    Rootfs = { request.Rootfs },
                    Io = new TaskIO { Stdin = request.Stdin, Stdout = request.Stdout, Stderr = request.Stderr, Terminal = request.Terminal },
                    Checkpoint = request.Checkpoint,
                    Pid = init.Pid,
                });
                LogCreated(_logger, request.Id, creation.SandboxId, init.GuestPid);
                container.Timeline?.Mark(BootPhase.Created);
            }, cancellationToken);
            return new CreateTaskResponse { Pid = container.Init.Pid };
        }
        catch (Exception) when (cancellationToken.IsCancellationRequested && _pod.IsEmpty)
        {
            // containerd gave up on this Create (it went away, e.g. restarted, or the call's deadline passed) and the
            // shim serves nothing else. No one will send it Delete or Shutdown: a restarted containerd reconnects to
            // a shim without a task and keeps it forever. Exiting lets containerd clean up as after a dead shim.
            LogCreateCancelled(_logger, request.Id);
            _shutdown.TrySetResult();
            throw;
        }
    }

    public async Task<StartResponse> StartAsync(StartRequest request, CancellationToken cancellationToken)
    {
        var process = Get(request.Id).Process(request.ExecId);
        _pod.RequireReady(process.IsInit ? $"start container {request.Id}" : $"start exec {request.ExecId} in container {request.Id}");

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
        return container.Process(request.ExecId) is ExecProcess exec
            ? await exec.DeleteAsync(cancellationToken)
            : await _pod.DeleteContainerAsync(container, cancellationToken);
    }

    public Task<Empty> ExecAsync(Containerd.Task.V2.ExecProcessRequest request)
    {
        var container = Get(request.Id);
        ValidateId(request.ExecId);
        var sandbox = _pod.RequireReady($"exec {request.ExecId} in container {request.Id}");
        if (container.Init.State is not (ProcessStateKind.Running or ProcessStateKind.Paused or ProcessStateKind.Created))
        {
            throw Errors.FailedPrecondition($"cannot exec in a {container.Init.State.ToString().ToLowerInvariant()} task");
        }

        var spec = request.Spec?.Value.ToByteArray() ?? throw Errors.InvalidArgument("exec needs a process spec");
        var stdio = new StdioConfig(request.Stdin, request.Stdout, request.Stderr, request.Terminal);
        var exec = new ExecProcess(container, request.ExecId, stdio, container.Init.Pid, spec, _pod.Environment(sandbox));
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
        var agent = _pod.RequireReady(doing).Agent;
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
        await _pod.UpdateAsync(container, resources.Memory, cancellationToken);
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
        var agent = _pod.RequireReady(doing).Agent;
        var stats = await AgentCalls.RunAsync(doing, () => agent.StatsContainerAsync(new ContainerRequest { ContainerId = request.Id }, null, cancellationToken));
        return new StatsResponse { Stats = CgroupMetrics.ToAny(stats) };
    }

    /// <summary>Never blocks: containerd calls it while other calls are in flight.</summary>
    public Task<ConnectResponse> ConnectAsync(ConnectRequest request)
    {
        var sandbox = _pod.Current;
        return Task.FromResult(new ConnectResponse
        {
            ShimPid = (uint)System.Environment.ProcessId,
            TaskPid = sandbox is null ? 0u : (uint)sandbox.Pid,
            Version = Version,
        });
    }

    public Task<Empty> ShutdownAsync(ShutdownRequest request)
    {
        if (request.Now || _pod.IsEmpty)
        {
            LogShutdown(_logger, _pod.ContainerCount);
            _shutdown.TrySetResult();
        }

        return Task.FromResult(new Empty());
    }

    /// <summary>Tears everything down: the shim is exiting (SIGTERM, or nobody connected).</summary>
    public ValueTask DisposeAsync() => _pod.DisposeAsync();

    private Container Get(string id) => _pod.Get(id);

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

    [LoggerMessage(Level = LogLevel.Warning, Message = "the create of {Id} was cancelled by its caller and this shim holds no other container: shutting down")]
    private static partial void LogCreateCancelled(ILogger logger, string id);

    [LoggerMessage(Level = LogLevel.Information, Message = "shutdown requested with {Count} containers left")]
    private static partial void LogShutdown(ILogger logger, int count);
}
