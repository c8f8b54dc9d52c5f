namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>A host with or without KVM and vhost-vsock, and with some vsock CIDs taken.</summary>
internal sealed class FakeHostProbe : IHostProbe
{
    public bool Kvm { get; init; }

    /// <summary>Why /dev/kvm does not open, when <see cref="Kvm"/> is false.</summary>
    public string KvmError { get; init; } = "no /dev/kvm";

    public KvmModules LoadedKvmModules { get; init; }

    public bool VhostVsockExists { get; init; }

    public HashSet<uint> TakenCids { get; init; } = [];

    /// <summary>When false, the probe cannot tell (like a host without access to /dev/vhost-vsock).</summary>
    public bool CanProbeCids { get; init; } = true;

    public bool KvmUsable(out string reason)
    {
        reason = Kvm ? "" : KvmError;
        return Kvm;
    }

    public bool? IsVsockCidFree(uint cid) => CanProbeCids ? !TakenCids.Contains(cid) : null;
}
