namespace ShimV2.Hypervisor;

/// <summary>The host a VM boots on: its devices and modules (<see cref="IHostProbe"/>) and what earlier boots
/// learnt about KVM (<see cref="KvmVerdictCache"/>). Tests replace both.</summary>
internal sealed record VmHost(IHostProbe Probe, KvmVerdictCache Cache)
{
    public static readonly VmHost Default = new(HostProbe.Instance, KvmVerdictCache.Default);

    /// <summary>Test seam: the KVM attempt runs under TCG in KVM's place (this host has no usable KVM), with its
    /// vCPUs never started when <see cref="KvmStandIn.Frozen"/>, so a guest that shows no life is real.</summary>
    public KvmStandIn? StandIn { get; init; }

    /// <summary>Where VM templates are kept and how a template guest is known to be ready; null: always boot cold.</summary>
    public VmTemplateOptions? Templates { get; init; }

    /// <summary>Gathers the facts for <paramref name="config"/> and decides. Reads the verdict file only when
    /// /dev/kvm opens; <paramref name="key"/> is where a new verdict goes (null: not cacheable).</summary>
    public AcceleratorDecision Decide(HypervisorConfig config, out KvmVerdictKey? key)
    {
        ArgumentNullException.ThrowIfNull(config);
        key = null;
        var kvmError = "";
        var opens = config.Accelerator is "kvm" or "auto" && Probe.KvmUsable(out kvmError);
        KvmVerdict? cached = null;
        var modules = KvmModules.None;
        if (opens)
        {
            modules = Probe.LoadedKvmModules;
            key = Cache.KeyFor(config);
            cached = key is null ? null : Cache.Read(key);
        }

        return AcceleratorDecision.Decide(new AcceleratorFacts(config.Accelerator, opens, kvmError, modules, cached, config.KvmProbeSeconds));
    }
}

internal sealed record KvmStandIn(bool Frozen);
