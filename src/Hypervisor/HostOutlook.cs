namespace ShimV2.Hypervisor;

/// <summary>What the accelerator choice would be for the next VM, for operators (the shim's check and env commands).</summary>
/// <param name="Accelerator">The first boot's accelerator; null when a VM could not start.</param>
/// <param name="Plan">tcg, kvm, kvm-watched (falls back to TCG), kvm-watched-or-fail, or fail.</param>
/// <param name="Reason">Why, in the words the shim logs.</param>
/// <param name="VerdictFile">Where the verdict for this host boot and kernel is (or would be) kept; null when not cacheable.</param>
public sealed record AcceleratorOutlook(AcceleratorKind? Accelerator, string Plan, string Reason, string? VerdictFile)
{
    /// <summary>Under auto, TCG because KVM is missing or cannot run the guest (pods start, slowly).</summary>
    public bool FellBackToTcg { get; init; }
}

/// <summary>The host's answers to a config's open choices, without booting anything.</summary>
public static class HostOutlook
{
    public static string KvmDevice => HostProbe.KvmDevice;

    public static string VhostVsockDevice => HostProbe.VhostVsockDevice;

    /// <summary>Where verdicts about KVM are kept, per host boot, guest kernel and QEMU.</summary>
    public static string VerdictDirectory => KvmVerdictCache.DefaultDirectory;

    public static AcceleratorOutlook Accelerator(HypervisorConfig config) => Accelerator(config, VmHost.Default);

    /// <summary>The agent transport; a HypervisorConfigException when the config asks for vsock and the host has none.</summary>
    public static AgentTransportKind Transport(HypervisorConfig config) => HostResolution.ResolveTransport(config, HostProbe.Instance);

    internal static AcceleratorOutlook Accelerator(HypervisorConfig config, VmHost vmHost)
    {
        ArgumentNullException.ThrowIfNull(config);
        var decision = vmHost.Decide(config, out var key);
        var plan = decision.Plan switch
        {
            AcceleratorPlan.Tcg => "tcg",
            AcceleratorPlan.Kvm => "kvm",
            AcceleratorPlan.TryKvmElseTcg => "kvm-watched",
            AcceleratorPlan.TryKvmElseFail => "kvm-watched-or-fail",
            _ => "fail",
        };
        return new AcceleratorOutlook(decision.FirstAttempt, plan, decision.Reason, key is null ? null : vmHost.Cache.PathFor(key))
        {
            FellBackToTcg = config.Accelerator == "auto" && decision.Plan == AcceleratorPlan.Tcg,
        };
    }
}
