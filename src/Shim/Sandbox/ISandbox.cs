using ShimV2.Agent.Protocol;

namespace ShimV2.Shim.Sandbox;

/// <summary>A running pod VM with its agent connection, as the task service sees it.</summary>
public interface ISandbox : IAsyncDisposable
{
    string Id { get; }

    SandboxPaths Paths { get; }

    /// <summary>The pid reported to containerd for every task: the hypervisor's, as Kata does.</summary>
    int Pid { get; }

    AgentClient Agent { get; }

    /// <summary>Completes when the VM is gone (QEMU exited or was stopped).</summary>
    Task Exited { get; }

    /// <summary>Why the VM exited, once <see cref="Exited"/> completed (e.g. "guest kernel panic: Kernel panic - not
    /// syncing: ..."); null while it runs.</summary>
    string? ExitReason => null;

    /// <summary>True once the VM is being stopped or has exited: an agent call failing now failed because the pod is
    /// going away, not because the guest refused it.</summary>
    bool StopRequested => Exited.IsCompleted;

    /// <summary>Freezes / thaws the whole VM (QMP stop/cont).</summary>
    Task PauseVmAsync(CancellationToken cancellationToken);

    Task ResumeVmAsync(CancellationToken cancellationToken);

    /// <summary>The VM's size now (boot size plus what was hot-plugged).</summary>
    SandboxSize Size { get; }

    /// <summary>The VM's size at boot: what containers without limits share.</summary>
    SandboxSize BootSize { get; }

    /// <summary>
    /// Grows the VM to at least <paramref name="wanted"/> (vCPU and memory hotplug, then onlined in the guest),
    /// capped at the config's maxima. Never shrinks. Returns the size reached.
    /// </summary>
    Task<SandboxSize> GrowAsync(SandboxSize wanted, CancellationToken cancellationToken);

    /// <summary>Stops the VM (QMP quit, then SIGKILL) without removing host state: every process of the pod then
    /// exits, and the containers can be deleted. For a guest that stopped answering.</summary>
    Task TerminateVmAsync(string reason);

    /// <summary>Stops the VM and removes the sandbox's host state; idempotent.</summary>
    Task StopAsync(CancellationToken cancellationToken);
}

/// <param name="NetworkNamespace">The pod's network namespace (path), whose interfaces the VM takes over; null: none.</param>
/// <param name="CgroupsPath">The sandbox spec's linux.cgroupsPath: the host cgroup the shim and QEMU live in; null: none.</param>
/// <param name="Timeline">Where the launch logs its boot phases; null: not logged.</param>
public sealed record SandboxLaunchRequest(
    string SandboxId, string ConfigPath, string Hostname, string? NetworkNamespace = null, string? CgroupsPath = null, Timeline.BootTimeline? Timeline = null);

public interface ISandboxLauncher
{
    Task<ISandbox> LaunchAsync(SandboxLaunchRequest request, CancellationToken cancellationToken);
}
