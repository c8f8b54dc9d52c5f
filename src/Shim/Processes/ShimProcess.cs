using Containerd.Events;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Shim.Events;
using ShimV2.Shim.Stdio;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Processes;

/// <summary>
/// A container's init or exec process as containerd sees it, owning its state, its lock and its agent calls (as
/// containerd's pkg/process init.go + init_state.go): an operation takes the lock, asks the state whether it is
/// allowed, calls the agent and transitions, in one place. The exit is an event, applied once under the state
/// gate together with its TaskExit, so containerd sees exactly one exit per process, never after its delete.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage(
    "Reliability", "CA1001", Justification = "The lock's wait handle is never created; a process lives until its Delete.")]
public abstract partial class ShimProcess
{
    protected static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _operation = new(1, 1);
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _startSettled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ProcessState _state = ProcessState.Created;

    protected ShimProcess(Container container, string execId, StdioConfig stdio, uint pid, ProcessEnvironment environment)
    {
        Container = container;
        ExecId = execId;
        Stdio = stdio;
        Pid = pid;
        Environment = environment;
    }

    public Container Container { get; }

    public string ContainerId => Container.Id;

    /// <summary>Empty for the init process.</summary>
    public string ExecId { get; }

    public bool IsInit => ExecId.Length == 0;

    /// <summary>The id containerd's TaskExit carries: the container id for init, else the exec id.</summary>
    public string EventId => IsInit ? ContainerId : ExecId;

    public StdioConfig Stdio { get; }

    /// <summary>The pid reported to containerd (the hypervisor's).</summary>
    public uint Pid { get; }

    /// <summary>The process's pid inside the guest.</summary>
    public uint GuestPid { get; protected set; }

    public StdioForwarder? Io { get; protected set; }

    /// <summary>
    /// stdout and stderr fully forwarded to containerd's FIFOs (complete when the process has no output copy): an exit
    /// is published only after it, as containerd's runc shim waits for its I/O copy before the exit.
    /// </summary>
    public Task OutputForwarded => Io?.OutputDrained ?? Task.CompletedTask;

    public uint ExitStatus { get; private set; }

    public DateTimeOffset? ExitedAt { get; private set; }

    protected ProcessEnvironment Environment { get; }

    /// <summary>How errors name this process: "container c" or "exec e1 in container c".</summary>
    protected string Name => IsInit ? $"container {ContainerId}" : $"exec {ExecId} in container {ContainerId}";

    public ProcessStateKind State
    {
        get
        {
            lock (_gate)
            {
                return _state.Kind;
            }
        }
    }

    /// <summary>Completes once the exit is recorded (and its TaskExit queued).</summary>
    public Task Exited => _exited.Task;

    /// <summary>
    /// Completes when the start event was published or the process will never start; an exit is published only
    /// after it, so containerd never sees an exit before its start.
    /// </summary>
    public Task StartSettled => _startSettled.Task;

    public async Task<uint> StartAsync(CancellationToken cancellationToken)
    {
        await _operation.WaitAsync(cancellationToken);
        try
        {
            Check(s => s.Start());
            try
            {
                await StartCoreAsync(cancellationToken);
            }
            finally
            {
                _startSettled.TrySetResult();
            }

            LogStarted(Environment.Logger, ContainerId, ExecId);
            return Pid;
        }
        finally
        {
            _operation.Release();
        }
    }

    public async Task KillAsync(uint signal, bool all, CancellationToken cancellationToken)
    {
        await _operation.WaitAsync(cancellationToken);
        try
        {
            if (!all)
            {
                Check(s => s.CheckKill());
            }

            var request = new SignalProcessRequest { ContainerId = ContainerId, ExecId = ExecId, Signal = signal, All = all };
            try
            {
                await Environment.Sandbox.Agent.SignalProcessAsync(request, null, cancellationToken);
            }
            catch (Agent.Protocol.AgentDeadlineException e) when (signal == SigKill && IsInit)
            {
                // A guest that does not answer can run nothing: SIGKILL of a container must still end it, and only
                // the VM's end can. Every process of the pod then exits, reported by its watcher.
                await Environment.Sandbox.TerminateVmAsync($"SIGKILL of {ContainerId}: {e.Message}");
            }
            catch (TtrpcException e) when (Environment.Sandbox.StopRequested)
            {
                // As runc answers a signal to a process that already finished: the pod's VM, and with it the
                // process, is going away.
                throw Errors.NotFound($"signal {signal} to {Name}: the pod's VM is stopping ({e.Message})");
            }
            catch (TtrpcException e)
            {
                throw Errors.Agent($"signal {signal} to {Name}", e);
            }

            if (State == ProcessStateKind.Created)
            {
                // A killed process that never started will never start: its exit may now be published.
                _startSettled.TrySetResult();
            }

            LogKilled(Environment.Logger, ContainerId, ExecId, signal);
        }
        finally
        {
            _operation.Release();
        }
    }

    public async Task ResizePtyAsync(uint width, uint height, CancellationToken cancellationToken)
    {
        if (!Stdio.Terminal)
        {
            throw Errors.FailedPrecondition($"process {EventId} has no terminal");
        }

        await AgentCalls.RunAsync($"resize the terminal of {Name}", () => Environment.Sandbox.Agent.TtyWinResizeAsync(
            new TtyWinResizeRequest { ContainerId = ContainerId, ExecId = ExecId, Rows = height, Cols = width }, null, cancellationToken));
    }

    public async Task CloseStdinAsync(CancellationToken cancellationToken)
    {
        if (Io is not null)
        {
            await Io.CloseStdinAsync(cancellationToken);
        }
    }

    /// <summary>Does the agent work of Start and transitions (publishing the start event); under the lock.</summary>
    protected abstract Task StartCoreAsync(CancellationToken cancellationToken);

    /// <summary>Runs before this process's exit is published (an init waits for its execs' exits).</summary>
    protected virtual Task BeforeExitAsync() => Task.CompletedTask;

    /// <summary>Runs an operation under the process's lock.</summary>
    protected async Task<T> LockedAsync<T>(Func<Task<T>> operation, CancellationToken cancellationToken)
    {
        await _operation.WaitAsync(cancellationToken);
        try
        {
            return await operation();
        }
        finally
        {
            _operation.Release();
        }
    }

    /// <summary>Applies an operation of the current state; throws "cannot X task in Y state" when not allowed.</summary>
    protected void Transition(Func<ProcessState, ProcessState> operation)
    {
        lock (_gate)
        {
            var next = operation(_state);
            if (!ProcessTransitions.IsValid(_state.Kind, next.Kind))
            {
                throw new InvalidOperationException($"invalid transition {_state.Kind} -> {next.Kind}");
            }

            _state = next;
        }
    }

    /// <summary>Checks an operation is allowed without changing state.</summary>
    protected void Check(Action<ProcessState> check)
    {
        lock (_gate)
        {
            check(_state);
        }
    }

    protected void SettleStart() => _startSettled.TrySetResult();

    /// <summary>
    /// Records the exit and queues its TaskExit, atomically and once: a second exit (the watcher after a forced one,
    /// or the other way round) changes nothing and publishes nothing. Returns whether this call recorded it.
    /// </summary>
    protected internal bool TryRecordExit(uint exitStatus, DateTimeOffset exitedAt)
    {
        lock (_gate)
        {
            if (_state.Kind is ProcessStateKind.Stopped or ProcessStateKind.Deleted)
            {
                return false;
            }

            ExitStatus = exitStatus;
            ExitedAt = exitedAt;
            _state = _state.Exited();

            // Queued under the gate, before Exited completes: an init's watcher waits on its execs' Exited and
            // must find their TaskExit already queued ahead of its own.
            Environment.Events.Publish(EventTopics.TaskExit, new TaskExit
            {
                ContainerId = ContainerId,
                Id = EventId,
                Pid = Pid,
                ExitStatus = exitStatus,
                ExitedAt = Timestamp.FromDateTimeOffset(exitedAt),
            });
        }

        _startSettled.TrySetResult();
        _exited.TrySetResult();
        LogExited(Environment.Logger, EventId, exitStatus);
        return true;
    }

    /// <summary>Waits for the process's exit in the guest and publishes it after its output and its start.</summary>
    protected internal async Task WatchExitAsync()
    {
        uint status;
        try
        {
            var exit = await Environment.Sandbox.Agent.WaitProcessAsync(
                new WaitProcessRequest { ContainerId = ContainerId, ExecId = ExecId }, null, CancellationToken.None);
            status = exit.ExitStatus;
            if (exit.OomKilled)
            {
                Container.OomAtExit(() => Environment.Events.Publish(EventTopics.TaskOom, new TaskOOM { ContainerId = ContainerId }));
            }
        }
        catch (Exception e)
        {
            // The agent is gone (the VM died): the process is gone with it. The channel closes as QEMU exits, a moment
            // before the exit is reaped: wait for it briefly, so the log says why the VM died (a guest panic's line).
            var sandbox = Environment.Sandbox;
            await sandbox.Exited.WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            LogLostProcess(Environment.Logger, EventId, sandbox.ExitReason is { } why ? $"{e.Message}; the VM exited: {why}" : e.Message);
            status = 255;
        }

        var exitedAt = DateTimeOffset.UtcNow;
        if (Io is not null)
        {
            await Io.OutputDrained.WaitAsync(DrainTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await BeforeExitAsync();
        await StartSettled;
        await RecordWatchedExitAsync(status, exitedAt);
    }

    /// <summary>Records the exit the watcher saw (an init also closes out its execs first, after their output).</summary>
    protected virtual Task RecordWatchedExitAsync(uint status, DateTimeOffset exitedAt)
    {
        TryRecordExit(status, exitedAt);
        return Task.CompletedTask;
    }

    protected static Timestamp Now(DateTimeOffset? at) => Timestamp.FromDateTimeOffset(at ?? DateTimeOffset.UtcNow);

    private const uint SigKill = 9;

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id} exec '{ExecId}' started")]
    private static partial void LogStarted(ILogger logger, string id, string execId);

    [LoggerMessage(Level = LogLevel.Information, Message = "task {Id} exec '{ExecId}' sent signal {Signal}")]
    private static partial void LogKilled(ILogger logger, string id, string execId, uint signal);

    [LoggerMessage(Level = LogLevel.Information, Message = "process {Id} exited with status {Status}")]
    private static partial void LogExited(ILogger logger, string id, uint status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "lost track of process {Id}: {Reason}")]
    private static partial void LogLostProcess(ILogger logger, string id, string reason);
}
