namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>A host with or without KVM and vhost-vsock, and with some vsock CIDs taken.</summary>
internal sealed class FakeHostProbe : IHostProbe
{
    public bool Kvm { get; init; }

    public bool VhostVsockExists { get; init; }

    public HashSet<uint> TakenCids { get; init; } = [];

    /// <summary>When false, the probe cannot tell (like a host without access to /dev/vhost-vsock).</summary>
    public bool CanProbeCids { get; init; } = true;

    public bool KvmUsable(out string reason)
    {
        reason = Kvm ? "" : "/dev/kvm: No such file or directory";
        return Kvm;
    }

    public bool? IsVsockCidFree(uint cid) => CanProbeCids ? !TakenCids.Contains(cid) : null;
}
