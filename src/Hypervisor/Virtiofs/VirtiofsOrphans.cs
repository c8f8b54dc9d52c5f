namespace ShimV2.Hypervisor.Virtiofs;

/// <summary>For `delete` after the shim died: the VM directory's virtiofsd, stopped as <see cref="OrphanedQemu"/> stops QEMU.</summary>
public static class VirtiofsOrphans
{
    /// <summary>Stops the virtiofsd recorded in <paramref name="vmDirectory"/> (if it is provably that one) and removes
    /// its socket, identity and lock files. True when none is left running.</summary>
    public static bool Stop(string vmDirectory, TimeSpan grace, TimeSpan killDeadline) =>
        VirtiofsDaemon.StopOrphan(vmDirectory, grace, killDeadline);
}
