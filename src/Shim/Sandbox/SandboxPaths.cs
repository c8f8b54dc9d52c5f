using ShimV2.Hypervisor;

namespace ShimV2.Shim.Sandbox;

/// <summary>
/// Per-sandbox directories on the host: /run/containerd-shim-csharp/&lt;sandbox-id&gt;/{vm,shared}.
/// vm/ holds QEMU's sockets and console log; shared/ is exported to the guest (9p), one subdirectory per container.
/// </summary>
public sealed class SandboxPaths
{
    public const string DefaultRoot = "/run/containerd-shim-csharp";

    /// <summary>Where the guest agent mounts the share.</summary>
    public const string GuestSharePath = "/run/csharp/shared";

    /// <summary>The 9p mount tag of the share.</summary>
    public const string ShareMountTag = "csharpshare";

    public SandboxPaths(string sandboxId, string? root = null)
    {
        if (sandboxId.Length == 0 || sandboxId.Contains('/', StringComparison.Ordinal) || sandboxId is "." or "..")
        {
            throw new ArgumentException($"invalid sandbox id \"{sandboxId}\"", nameof(sandboxId));
        }

        SandboxId = sandboxId;
        Root = Path.Combine(root ?? Environment.GetEnvironmentVariable("CSHARP_SHIM_STATE_ROOT") ?? DefaultRoot, sandboxId);
    }

    public string SandboxId { get; }

    public string Root { get; }

    public string VmDirectory => Path.Combine(Root, "vm");

    public string SharedDirectory => Path.Combine(Root, "shared");

    public string ContainerShareDirectory(string containerId) => Path.Combine(SharedDirectory, containerId);

    /// <summary>
    /// Creates the state root, the pod's directory, its vm/ and shared/ directories, each 0700 even when it existed
    /// (an older shim made them 0755): the QMP and agent sockets, the console log and the containers' root
    /// filesystems are then out of reach of every other user, whatever modes QEMU gives the files inside.
    /// </summary>
    public void CreatePrivateDirectories()
    {
        foreach (var directory in new[] { Path.GetDirectoryName(Root)!, Root, VmDirectory, SharedDirectory })
        {
            PrivateDirectory.Create(directory);
        }
    }

    public string ContainerRootfs(string containerId) => Path.Combine(ContainerShareDirectory(containerId), "rootfs");

    public static string GuestContainerDirectory(string containerId) => $"{GuestSharePath}/{containerId}";

    public static string GuestRootfs(string containerId) => $"{GuestContainerDirectory(containerId)}/rootfs";
}
