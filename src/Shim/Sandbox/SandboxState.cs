namespace ShimV2.Shim.Sandbox;

/// <summary>The pod VM as the task service sees it.</summary>
public enum SandboxState
{
    /// <summary>No VM yet (or the last one was stopped on purpose): the next Create boots one.</summary>
    None,

    /// <summary>QEMU is starting and the agent is not yet ready.</summary>
    Booting,

    /// <summary>The agent answers: containers can be created and execs run.</summary>
    Ready,

    /// <summary>A stop was asked (the pod's last container or its sandbox container was deleted).</summary>
    Stopping,

    /// <summary>The VM died on its own: every call that needs the guest fails at once; Delete still cleans up.</summary>
    Dead,
}

public enum SandboxEvent
{
    Launch,
    Booted,
    BootFailed,
    VmExited,
    Stop,
    Stopped,
}

/// <summary>The valid (state, event) pairs; any other pair is a bug and throws.</summary>
public static class SandboxStateMachine
{
    public static SandboxState Next(SandboxState state, SandboxEvent evt) => (state, evt) switch
    {
        (SandboxState.None, SandboxEvent.Launch) => SandboxState.Booting,
        (SandboxState.Booting, SandboxEvent.Booted) => SandboxState.Ready,
        (SandboxState.Booting, SandboxEvent.BootFailed) => SandboxState.None,
        (SandboxState.Ready, SandboxEvent.VmExited) => SandboxState.Dead,
        (SandboxState.Ready, SandboxEvent.Stop) => SandboxState.Stopping,

        // QEMU's exit is expected while stopping, and may be seen after the stop finished.
        (SandboxState.Stopping, SandboxEvent.VmExited) => SandboxState.Stopping,
        (SandboxState.Stopping, SandboxEvent.Stopped) => SandboxState.None,
        (SandboxState.None, SandboxEvent.VmExited) => SandboxState.None,
        (SandboxState.None, SandboxEvent.Stop) => SandboxState.None,

        // A dead VM's host state (share, mounts, taps) is still removed by the stop.
        (SandboxState.Dead, SandboxEvent.VmExited) => SandboxState.Dead,
        (SandboxState.Dead, SandboxEvent.Stop) => SandboxState.Stopping,
        _ => throw new InvalidOperationException($"invalid sandbox transition: {evt} in state {state}"),
    };
}
