using Microsoft.Extensions.Logging;
using ShimV2.Shim.Cgroups;

namespace ShimV2.Shim.Sandbox;

/// <summary>The pod's host cgroup around the VM's life: entered before QEMU is spawned, left after it is gone.</summary>
public sealed partial class QemuSandbox
{
    private HostCgroup? HostCgroup { get; init; }

    /// <summary>The record `delete` reads to remove the cgroup of a shim that died.</summary>
    internal static string HostCgroupRecord(SandboxPaths paths) => Path.Combine(paths.Root, HostCgroup.RecordFileName);

    /// <summary>Moves the shim into the sandbox spec's cgroup, so QEMU, its child, starts there.</summary>
    private static async Task<HostCgroup?> EnterHostCgroupAsync(
        SandboxLaunchRequest request, SandboxPaths paths, ILogger logger, CancellationToken cancellationToken)
    {
        if (request.CgroupsPath is not { } raw)
        {
            return null;
        }

        try
        {
            return await HostCgroup.EnterAsync(
                CgroupsPath.Parse(raw), Environment.ProcessId, request.SandboxId, HostCgroupRecord(paths), logger, cancellationToken);
        }
        catch (Exception e) when (e is HostCgroupException or FormatException)
        {
            throw new SandboxException(e.Message);
        }
    }

    /// <summary>QEMU inherited the cgroup; checked, since kubelet's accounting of the pod depends on it.</summary>
    private static void ConfirmInHostCgroup(HostCgroup? cgroup, int qemuPid)
    {
        if (cgroup is null || cgroup.Contains(qemuPid))
        {
            return;
        }

        try
        {
            cgroup.Add(qemuPid);
        }
        catch (IOException e)
        {
            throw new SandboxException($"cannot move QEMU (pid {qemuPid}) into the pod cgroup {cgroup.Path}: {e.Message}");
        }
    }

    private static async Task LeaveHostCgroupAsync(HostCgroup? cgroup)
    {
        if (cgroup is not null)
        {
            await cgroup.LeaveAsync(CancellationToken.None);
        }
    }
}
