namespace ShimV2.Fuzz;

/// <summary>A fuzz target: returns for any input the code must refuse or accept; throws only on a bug.</summary>
public delegate void FuzzTarget(ReadOnlySpan<byte> data);

/// <summary>Every target by the name eng/fuzz.sh and the corpus directories use.</summary>
public static class FuzzTargets
{
    public static IReadOnlyDictionary<string, FuzzTarget> All { get; } = new Dictionary<string, FuzzTarget>(StringComparer.Ordinal)
    {
        ["ttrpc-server"] = TtrpcTargets.Server,
        ["ttrpc-client"] = TtrpcTargets.Client,
        ["agent-requests"] = AgentTargets.Requests,
        ["oci-spec"] = OciTargets.Spec,
        ["qmp"] = QmpTargets.Messages,
        ["netlink"] = NetlinkTargets.Messages,
    };
}
