namespace ShimV2.Hypervisor;

public enum VmState
{
    /// <summary>The object exists; QEMU is not started.</summary>
    Created,

    /// <summary>QEMU is starting; QMP is not yet answering.</summary>
    Starting,

    /// <summary>QEMU runs the guest.</summary>
    Running,

    /// <summary>The guest's vCPUs are stopped (QMP stop, or QEMU stopped them).</summary>
    Paused,

    /// <summary>A stop was requested or the guest shut down; QEMU is going away.</summary>
    Stopping,

    /// <summary>QEMU has exited and was reaped. Terminal.</summary>
    Stopped,

    /// <summary>QEMU failed to boot or died unexpectedly. Terminal.</summary>
    Failed,
}

/// <summary>The valid <see cref="VmState"/> transitions. Staying in a state is not a transition.</summary>
public static class VmStateMachine
{
    private static readonly Dictionary<VmState, VmState[]> Allowed = new()
    {
        [VmState.Created] = [VmState.Starting, VmState.Stopped, VmState.Failed],
        [VmState.Starting] = [VmState.Running, VmState.Stopping, VmState.Stopped, VmState.Failed],
        [VmState.Running] = [VmState.Paused, VmState.Stopping, VmState.Stopped, VmState.Failed],
        [VmState.Paused] = [VmState.Running, VmState.Stopping, VmState.Stopped, VmState.Failed],
        [VmState.Stopping] = [VmState.Stopped, VmState.Failed],
        [VmState.Stopped] = [],
        [VmState.Failed] = [],
    };

    public static bool CanTransition(VmState from, VmState to) =>
        Allowed.TryGetValue(from, out var targets) && Array.IndexOf(targets, to) >= 0;

    public static bool IsTerminal(VmState state) => state is VmState.Stopped or VmState.Failed;
}
