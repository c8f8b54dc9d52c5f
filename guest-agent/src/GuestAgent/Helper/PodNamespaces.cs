using System.Globalization;
using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Helper;

/// <summary>The pod's sandbox (pause) container, running in this VM: whose namespaces the pod's other containers join.</summary>
/// <param name="Id">Its container id (CRI's sandbox id).</param>
/// <param name="InitPid">Its init's pid in the agent's PID namespace.</param>
internal sealed record PodSandbox(string Id, int InitPid);

/// <summary>
/// Reads the namespace paths containerd's CRI writes into a pod's container specs. They are
/// <c>/proc/&lt;task pid&gt;/ns/&lt;name&gt;</c> of the sandbox container, and the task pid containerd knows is QEMU's,
/// on the host: the pid itself means nothing in the guest, so any such path stands for "the sandbox's namespace".
/// </summary>
internal static class PodNamespaces
{
    /// <summary>The annotation naming the pod's sandbox container (containerd's CRI, 1.6 to 2.x).</summary>
    public const string SandboxIdAnnotation = "io.kubernetes.cri.sandbox-id";

    /// <summary>"sandbox" for the pause container, "container" for the pod's others.</summary>
    public const string ContainerTypeAnnotation = "io.kubernetes.cri.container-type";

    /// <summary>The OCI namespace types an app container joins in its sandbox, their /proc/PID/ns names and clone flags.</summary>
    public static readonly IReadOnlyDictionary<string, (string File, uint Flag)> Joinable = new Dictionary<string, (string, uint)>(StringComparer.Ordinal)
    {
        ["pid"] = ("pid", Libc.CLONE_NEWPID),
        ["ipc"] = ("ipc", Libc.CLONE_NEWIPC),
        ["uts"] = ("uts", Libc.CLONE_NEWUTS),
    };

    /// <summary>The id of the pod sandbox a container belongs to: CRI's annotation, else the sandbox the shim created.</summary>
    public static string? SandboxIdOf(IReadOnlyDictionary<string, string>? annotations, string? agentSandboxId) =>
        annotations != null && annotations.TryGetValue(SandboxIdAnnotation, out var id) && id.Length > 0 ? id : agentSandboxId;

    /// <summary>Whether the spec marks itself as the pod's sandbox (pause) container.</summary>
    public static bool IsSandboxContainer(IReadOnlyDictionary<string, string>? annotations, string containerId, string? sandboxId) =>
        annotations != null && annotations.TryGetValue(ContainerTypeAnnotation, out var type) && type == "sandbox"
        || containerId == sandboxId;

    /// <summary>Whether <paramref name="path"/> is <c>/proc/&lt;digits&gt;/ns/&lt;file&gt;</c>: a process's namespace, as CRI writes it.</summary>
    public static bool IsProcessNamespacePath(string path, string file)
    {
        const string prefix = "/proc/";
        if (!path.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = path.AsSpan(prefix.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0 || !uint.TryParse(rest[..slash], NumberStyles.None, CultureInfo.InvariantCulture, out _))
        {
            return false;
        }

        return rest[slash..].SequenceEqual("/ns/" + file);
    }
}
