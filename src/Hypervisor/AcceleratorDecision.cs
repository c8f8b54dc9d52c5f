namespace ShimV2.Hypervisor;

/// <summary>The KVM flavours the host kernel has loaded, as seen under /sys/module.</summary>
[Flags]
internal enum KvmModules
{
    None = 0,
    Intel = 1,
    Amd = 2,

    /// <summary>kvm_pvm: runs only guest kernels built as PVM guests.</summary>
    Pvm = 4,
}

/// <summary>What was learnt earlier in this host boot about this guest kernel under KVM.</summary>
internal sealed record KvmVerdict(bool KvmWorks, string Reason);

/// <summary>Everything the accelerator choice depends on; gathered by <see cref="VmHost"/>, faked in tests.</summary>
/// <param name="Configured">The config's accelerator: kvm, tcg or auto.</param>
/// <param name="KvmOpens">Whether /dev/kvm opens read-write.</param>
/// <param name="KvmError">Why it does not ("no /dev/kvm", "/dev/kvm: Permission denied").</param>
/// <param name="Modules">The KVM modules loaded.</param>
/// <param name="Cached">The verdict remembered for this host boot, kernel and QEMU; null when none.</param>
/// <param name="ProbeSeconds">How long a KVM guest gets to show a sign of life (the config's kvmProbeSeconds).</param>
internal sealed record AcceleratorFacts(string Configured, bool KvmOpens, string KvmError, KvmModules Modules, KvmVerdict? Cached, int ProbeSeconds);

internal enum AcceleratorPlan
{
    /// <summary>Boot under TCG.</summary>
    Tcg,

    /// <summary>Boot under KVM, known to run this guest kernel.</summary>
    Kvm,

    /// <summary>Boot under KVM and watch for a sign of life; without one, boot again under TCG (auto).</summary>
    TryKvmElseTcg,

    /// <summary>Boot under KVM and watch for a sign of life; without one, fail (kvm).</summary>
    TryKvmElseFail,

    /// <summary>Do not boot: the config asks for KVM and this host cannot run the guest under it.</summary>
    Fail,
}

/// <summary>The accelerator choice for one VM and the reason, in words an operator reads in containerd's log.</summary>
internal sealed record AcceleratorDecision(AcceleratorPlan Plan, string Reason)
{
    /// <summary>The accelerator of the first boot attempt; null for <see cref="AcceleratorPlan.Fail"/>.</summary>
    public AcceleratorKind? FirstAttempt => Plan switch
    {
        AcceleratorPlan.Tcg => AcceleratorKind.Tcg,
        AcceleratorPlan.Fail => null,
        _ => AcceleratorKind.Kvm,
    };

    public bool WatchesForLife => Plan is AcceleratorPlan.TryKvmElseTcg or AcceleratorPlan.TryKvmElseFail;

    /// <summary>
    /// "KVM opens" is not "KVM runs this guest": a PVM-only KVM (kvm_pvm) opens fine and runs only PVM guest
    /// kernels. So auto trusts KVM only where it is an ordinary KVM (then the first boot is watched) or where
    /// a verdict from this host boot says it works; explicit kvm gets one watched attempt and then fails fast.
    /// </summary>
    public static AcceleratorDecision Decide(AcceleratorFacts facts)
    {
        ArgumentNullException.ThrowIfNull(facts);
        var auto = facts.Configured == "auto";
        if (facts.Configured == "tcg")
        {
            return new(AcceleratorPlan.Tcg, "accelerator is tcg in the config");
        }

        if (facts.Configured != "kvm" && !auto)
        {
            return new(AcceleratorPlan.Fail, $"unknown accelerator \"{facts.Configured}\"");
        }

        if (!facts.KvmOpens)
        {
            return auto
                ? new(AcceleratorPlan.Tcg, $"{facts.KvmError}; using TCG")
                : new(AcceleratorPlan.Fail, $"accelerator is kvm but {facts.KvmError}");
        }

        var kind = Describe(facts.Modules);
        if (facts.Cached is { } verdict)
        {
            if (verdict.KvmWorks)
            {
                return new(AcceleratorPlan.Kvm, $"{kind} runs this guest kernel (seen since this host booted)");
            }

            return auto
                ? new(AcceleratorPlan.Tcg, $"{verdict.Reason} (seen since this host booted); using TCG")
                : new(AcceleratorPlan.Fail, $"accelerator is kvm but {verdict.Reason} (seen since this host booted)");
        }

        if (facts.Modules == KvmModules.Pvm)
        {
            return auto
                ? new(AcceleratorPlan.Tcg, "KVM is PVM-only (kvm_pvm): the guest kernel is not known to be a PVM guest; using TCG")
                : new(AcceleratorPlan.TryKvmElseFail, $"KVM is PVM-only (kvm_pvm); trying whether the guest kernel runs under it (up to {facts.ProbeSeconds} s)");
        }

        return auto
            ? new(AcceleratorPlan.TryKvmElseTcg, $"{kind} opens; watching the first boot under it (TCG if the guest shows no sign of life within {facts.ProbeSeconds} s)")
            : new(AcceleratorPlan.TryKvmElseFail, $"accelerator is kvm; watching the first boot under {kind} (up to {facts.ProbeSeconds} s)");
    }

    /// <summary>"KVM (kvm_intel)", "KVM (kvm_pvm)", "KVM" when no known module is loaded (built in).</summary>
    public static string Describe(KvmModules modules)
    {
        var names = new List<string>();
        if (modules.HasFlag(KvmModules.Intel))
        {
            names.Add("kvm_intel");
        }

        if (modules.HasFlag(KvmModules.Amd))
        {
            names.Add("kvm_amd");
        }

        if (modules.HasFlag(KvmModules.Pvm))
        {
            names.Add("kvm_pvm");
        }

        return names.Count == 0 ? "KVM" : $"KVM ({string.Join(", ", names)})";
    }
}
