using ShimV2.Shim.Stdio;

namespace ShimV2.Shim.Processes;

/// <summary>A container's init or exec process as containerd sees it: state, stdio and exit.</summary>
public sealed class ShimProcess
{
    private readonly object _gate = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _startSettled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ProcessState _state = ProcessState.Created;

    public ShimProcess(string containerId, string execId, StdioConfig stdio, uint pid, byte[]? execSpec = null)
    {
        ContainerId = containerId;
        ExecId = execId;
        Stdio = stdio;
        Pid = pid;
        ExecSpec = execSpec;
    }

    public string ContainerId { get; }

    /// <summary>Empty for the init process.</summary>
    public string ExecId { get; }

    public bool IsInit => ExecId.Length == 0;

    /// <summary>The id containerd's TaskExit carries: the container id for init, else the exec id.</summary>
    public string EventId => IsInit ? ContainerId : ExecId;

    public StdioConfig Stdio { get; }

    /// <summary>The pid reported to containerd (the hypervisor's).</summary>
    public uint Pid { get; }

    /// <summary>The process's pid inside the guest.</summary>
    public uint GuestPid { get; set; }

    /// <summary>The OCI Process JSON of an exec, kept until Start.</summary>
    public byte[]? ExecSpec { get; }

    public StdioForwarder? Io { get; set; }

    public uint ExitStatus { get; private set; }

    public DateTimeOffset? ExitedAt { get; private set; }

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

    /// <summary>Completes once the exit is recorded (after the process's output was drained).</summary>
    public Task Exited => _exited.Task;

    /// <summary>
    /// Completes when the start event was published or the process will never start; an exit is published only
    /// after it, so containerd never sees an exit before its start.
    /// </summary>
    public Task StartSettled => _startSettled.Task;

    public void SettleStart() => _startSettled.TrySetResult();

    /// <summary>Applies an operation of the current state; throws "cannot X task in Y state" when not allowed.</summary>
    public void Transition(Func<ProcessState, ProcessState> operation)
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
    public void Check(Action<ProcessState> check)
    {
        lock (_gate)
        {
            check(_state);
        }
    }

    public void RecordExit(uint exitStatus, DateTimeOffset exitedAt)
    {
        lock (_gate)
        {
            if (_state.Kind is ProcessStateKind.Stopped or ProcessStateKind.Deleted)
            {
                return;
            }

            ExitStatus = exitStatus;
            ExitedAt = exitedAt;
            _state = _state.Exited();
        }

        _startSettled.TrySetResult();
        _exited.TrySetResult();
    }
}
