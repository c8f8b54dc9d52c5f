namespace ShimV2.Shim.Processes;

public enum ProcessStateKind
{
    Created,
    Running,
    Paused,
    Stopped,
    Deleted,
}

/// <summary>
/// One class per state, as containerd's pkg/process init_state.go: each state answers the operations it
/// allows with the next state, and refuses the rest with "cannot X task in Y state".
/// </summary>
public abstract class ProcessState
{
    public static readonly ProcessState Created = new CreatedState();
    public static readonly ProcessState Running = new RunningState();
    public static readonly ProcessState Paused = new PausedState();
    public static readonly ProcessState Stopped = new StoppedState();
    public static readonly ProcessState Deleted = new DeletedState();

    public abstract ProcessStateKind Kind { get; }

    public virtual ProcessState Start() => throw Cannot("start");

    public virtual ProcessState Pause() => throw Cannot("pause");

    public virtual ProcessState Resume() => throw Cannot("resume");

    public virtual ProcessState Delete() => throw Cannot("delete");

    /// <summary>The process ended (or was never started and is gone).</summary>
    public virtual ProcessState Exited() => throw Cannot("exit");

    /// <summary>Whether a signal can reach the process; a finished one is NotFound, as runc's shim says.</summary>
    public virtual void CheckKill() => throw Cannot("kill");

    /// <summary>Whether the container's resources can be changed: not once it has stopped.</summary>
    public virtual void CheckUpdate() => throw Cannot("update");

    public static ProcessState Of(ProcessStateKind kind) => kind switch
    {
        ProcessStateKind.Created => Created,
        ProcessStateKind.Running => Running,
        ProcessStateKind.Paused => Paused,
        ProcessStateKind.Stopped => Stopped,
        _ => Deleted,
    };

    protected ShimException Cannot(string operation) =>
        Errors.FailedPrecondition($"cannot {operation} task in {Kind.ToString().ToLowerInvariant()} state");

    private sealed class CreatedState : ProcessState
    {
        public override ProcessStateKind Kind => ProcessStateKind.Created;

        public override ProcessState Start() => Running;

        public override ProcessState Delete() => Deleted;

        public override ProcessState Exited() => Stopped;

        public override void CheckKill()
        {
        }

        public override void CheckUpdate()
        {
        }
    }

    private sealed class RunningState : ProcessState
    {
        public override ProcessStateKind Kind => ProcessStateKind.Running;

        public override ProcessState Pause() => Paused;

        public override ProcessState Exited() => Stopped;

        public override void CheckKill()
        {
        }

        public override void CheckUpdate()
        {
        }
    }

    private sealed class PausedState : ProcessState
    {
        public override ProcessStateKind Kind => ProcessStateKind.Paused;

        public override ProcessState Resume() => Running;

        public override ProcessState Exited() => Stopped;

        public override void CheckKill()
        {
        }

        public override void CheckUpdate()
        {
        }
    }

    private sealed class StoppedState : ProcessState
    {
        public override ProcessStateKind Kind => ProcessStateKind.Stopped;

        public override ProcessState Delete() => Deleted;

        public override void CheckKill() => throw Errors.NotFound("process already finished");
    }

    private sealed class DeletedState : ProcessState
    {
        public override ProcessStateKind Kind => ProcessStateKind.Deleted;

        public override void CheckKill() => throw Errors.NotFound("process already finished");
    }
}

/// <summary>The explicit table of valid transitions; every state class must agree with it (tested).</summary>
public static class ProcessTransitions
{
    private static readonly HashSet<(ProcessStateKind From, ProcessStateKind To)> Valid =
    [
        (ProcessStateKind.Created, ProcessStateKind.Running),
        (ProcessStateKind.Created, ProcessStateKind.Stopped),
        (ProcessStateKind.Created, ProcessStateKind.Deleted),
        (ProcessStateKind.Running, ProcessStateKind.Paused),
        (ProcessStateKind.Running, ProcessStateKind.Stopped),
        (ProcessStateKind.Paused, ProcessStateKind.Running),
        (ProcessStateKind.Paused, ProcessStateKind.Stopped),
        (ProcessStateKind.Stopped, ProcessStateKind.Deleted),
    ];

    public static bool IsValid(ProcessStateKind from, ProcessStateKind to) => Valid.Contains((from, to));
}
