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

    /// <summary>
    /// Whether <paramref name="action"/> may run in <paramref name="state"/>: asked, under the VM's lock, before the
    /// action does anything (cloud-hypervisor's <c>valid_transition(...)?</c>), so an action in the wrong state is an
    /// error and never a half-done step.
    /// </summary>
    public static VmActionVerdict Decide(VmState state, VmAction action) => (action, state) switch
    {
        (VmAction.Boot, VmState.Created) => VmActionVerdict.Proceed,
        (VmAction.Pause, VmState.Running) => VmActionVerdict.Proceed,
        (VmAction.Pause, VmState.Paused) => VmActionVerdict.AlreadyDone,
        (VmAction.Resume, VmState.Paused) => VmActionVerdict.Proceed,
        (VmAction.Resume, VmState.Running) => VmActionVerdict.AlreadyDone,
        (VmAction.Hotplug, VmState.Running or VmState.Paused) => VmActionVerdict.Proceed,

        // Stop is how every owner ends a VM, whatever happened to it: it must always be allowed (and is idempotent).
        (VmAction.Stop, VmState.Stopped or VmState.Failed) => VmActionVerdict.AlreadyDone,
        (VmAction.Stop, _) => VmActionVerdict.Proceed,
        _ => VmActionVerdict.Invalid,
    };

    /// <summary>Throws <see cref="InvalidVmStateException"/> when <paramref name="action"/> is invalid in
    /// <paramref name="state"/>; otherwise says whether there is anything to do.</summary>
    public static VmActionVerdict Require(VmState state, VmAction action, string sandboxId) =>
        Decide(state, action) is var verdict && verdict == VmActionVerdict.Invalid
            ? throw new InvalidVmStateException(sandboxId, action, state)
            : verdict;
}

/// <summary>What an owner of a VM asks of it.</summary>
public enum VmAction
{
    Boot,
    Pause,
    Resume,
    Hotplug,
    Stop,
}

public enum VmActionVerdict
{
    /// <summary>Allowed: do it, then transition.</summary>
    Proceed,

    /// <summary>The VM is already where the action leads: nothing to do.</summary>
    AlreadyDone,

    /// <summary>Not allowed in this state.</summary>
    Invalid,
}

/// <summary>An action asked of a VM in a state that does not allow it (e.g. pause a stopped VM).</summary>
public sealed class InvalidVmStateException(string sandboxId, VmAction action, VmState state, string? doing = null)
    : HypervisorException($"cannot {doing ?? action.ToString().ToLowerInvariant()} vm {sandboxId}: it is {state}")
{
    public VmAction Action { get; } = action;

    public VmState State { get; } = state;
}
