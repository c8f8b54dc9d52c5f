namespace ShimV2.Hypervisor.Tests;

/// <summary>Every accelerator decision, from the facts a host offers: one test each.</summary>
public sealed class AcceleratorDecisionTests
{
    private static AcceleratorDecision Decide(string configured, bool opens = true, KvmModules modules = KvmModules.Intel, KvmVerdict? cached = null, string error = "no /dev/kvm") =>
        AcceleratorDecision.Decide(new AcceleratorFacts(configured, opens, opens ? "" : error, modules, cached, ProbeSeconds: 10));

    [Fact]
    public void Tcg_in_the_config_is_tcg_whatever_the_host_has()
    {
        Assert.Equal(new AcceleratorDecision(AcceleratorPlan.Tcg, "accelerator is tcg in the config"), Decide("tcg"));
    }

    [Fact]
    public void Auto_without_dev_kvm_is_tcg_saying_so()
    {
        Assert.Equal(new AcceleratorDecision(AcceleratorPlan.Tcg, "no /dev/kvm; using TCG"), Decide("auto", opens: false, modules: KvmModules.None));
    }

    [Fact]
    public void Auto_when_dev_kvm_does_not_open_is_tcg_with_the_error()
    {
        Assert.Equal(
            new AcceleratorDecision(AcceleratorPlan.Tcg, "/dev/kvm: Permission denied; using TCG"),
            Decide("auto", opens: false, error: "/dev/kvm: Permission denied"));
    }

    [Fact]
    public void Auto_on_a_pvm_only_kvm_is_tcg_without_a_probe_boot()
    {
        var decision = Decide("auto", modules: KvmModules.Pvm);

        Assert.Equal(AcceleratorPlan.Tcg, decision.Plan);
        Assert.Equal(AcceleratorKind.Tcg, decision.FirstAttempt);
        Assert.Equal("KVM is PVM-only (kvm_pvm): the guest kernel is not known to be a PVM guest; using TCG", decision.Reason);
    }

    [Fact]
    public void Auto_on_an_ordinary_kvm_not_yet_seen_boots_kvm_and_watches_with_tcg_as_fallback()
    {
        var decision = Decide("auto", modules: KvmModules.Intel);

        Assert.Equal(AcceleratorPlan.TryKvmElseTcg, decision.Plan);
        Assert.Equal(AcceleratorKind.Kvm, decision.FirstAttempt);
        Assert.True(decision.WatchesForLife);
        Assert.Equal("KVM (kvm_intel) opens; watching the first boot under it (TCG if the guest shows no sign of life within 10 s)", decision.Reason);
    }

    [Fact]
    public void Auto_with_kvm_built_in_and_no_module_seen_is_treated_as_ordinary_kvm()
    {
        Assert.Equal(AcceleratorPlan.TryKvmElseTcg, Decide("auto", modules: KvmModules.None).Plan);
    }

    [Fact]
    public void Auto_where_kvm_was_seen_to_work_this_boot_is_kvm_without_a_watch()
    {
        var decision = Decide("auto", modules: KvmModules.Amd, cached: new KvmVerdict(true, "KVM (kvm_amd) runs this guest kernel"));

        Assert.Equal(new AcceleratorDecision(AcceleratorPlan.Kvm, "KVM (kvm_amd) runs this guest kernel (seen since this host booted)"), decision);
        Assert.False(decision.WatchesForLife);
    }

    [Fact]
    public void Auto_where_kvm_was_seen_to_fail_this_boot_is_tcg_at_once_with_the_remembered_reason()
    {
        var decision = Decide("auto", cached: new KvmVerdict(false, "the guest showed no sign of life under KVM (kvm_intel) within 10 s"));

        Assert.Equal(
            new AcceleratorDecision(AcceleratorPlan.Tcg, "the guest showed no sign of life under KVM (kvm_intel) within 10 s (seen since this host booted); using TCG"),
            decision);
    }

    [Fact]
    public void A_remembered_success_also_lets_auto_use_a_pvm_only_kvm()
    {
        Assert.Equal(AcceleratorPlan.Kvm, Decide("auto", modules: KvmModules.Pvm, cached: new KvmVerdict(true, "KVM (kvm_pvm) runs this guest kernel")).Plan);
    }

    [Fact]
    public void Kvm_without_dev_kvm_fails_at_once_saying_why()
    {
        Assert.Equal(new AcceleratorDecision(AcceleratorPlan.Fail, "accelerator is kvm but no /dev/kvm"), Decide("kvm", opens: false));
        Assert.Null(Decide("kvm", opens: false).FirstAttempt);
    }

    [Fact]
    public void Kvm_where_kvm_was_seen_to_fail_this_boot_fails_at_once_with_the_remembered_reason()
    {
        var decision = Decide("kvm", modules: KvmModules.Pvm, cached: new KvmVerdict(false, "the guest showed no sign of life under KVM (kvm_pvm) within 10 s"));

        Assert.Equal(
            new AcceleratorDecision(AcceleratorPlan.Fail, "accelerator is kvm but the guest showed no sign of life under KVM (kvm_pvm) within 10 s (seen since this host booted)"),
            decision);
    }

    [Fact]
    public void Kvm_on_a_pvm_only_kvm_gets_one_watched_boot_then_fails()
    {
        var decision = Decide("kvm", modules: KvmModules.Pvm);

        Assert.Equal(AcceleratorPlan.TryKvmElseFail, decision.Plan);
        Assert.Equal("KVM is PVM-only (kvm_pvm); trying whether the guest kernel runs under it (up to 10 s)", decision.Reason);
    }

    [Fact]
    public void Kvm_on_an_ordinary_kvm_not_yet_seen_is_watched_and_fails_rather_than_fall_back()
    {
        Assert.Equal(AcceleratorPlan.TryKvmElseFail, Decide("kvm", modules: KvmModules.Intel).Plan);
    }

    [Fact]
    public void Kvm_where_kvm_was_seen_to_work_is_kvm()
    {
        Assert.Equal(AcceleratorPlan.Kvm, Decide("kvm", cached: new KvmVerdict(true, "KVM (kvm_intel) runs this guest kernel")).Plan);
    }

    [Fact]
    public void An_unknown_accelerator_fails()
    {
        Assert.Equal(new AcceleratorDecision(AcceleratorPlan.Fail, "unknown accelerator \"xen\""), Decide("xen"));
    }

    [Theory]
    [InlineData(0, "KVM")]
    [InlineData(1, "KVM (kvm_intel)")]
    [InlineData(5, "KVM (kvm_intel, kvm_pvm)")]
    public void Kvm_is_described_by_its_modules(int modules, string expected)
    {
        Assert.Equal(expected, AcceleratorDecision.Describe((KvmModules)modules));
    }

    [Fact]
    public void The_host_gathers_the_facts_reading_the_verdict_only_when_dev_kvm_opens()
    {
        using var dir = new TestDirectory("accel");
        var config = Config(dir);
        var cache = new KvmVerdictCache(dir.Combine("verdicts"), dir.File("boot_id", "b1\n"));
        var key = cache.KeyFor(config)!;
        Assert.Null(cache.Write(key, new KvmVerdict(false, "the guest showed no sign of life under KVM (kvm_intel) within 10 s")));

        var withKvm = new VmHost(new FakeHostProbe { Kvm = true, LoadedKvmModules = KvmModules.Intel }, cache).Decide(config, out var seenKey);
        var withoutKvm = new VmHost(new FakeHostProbe(), cache).Decide(config, out var noKey);

        Assert.Equal(AcceleratorPlan.Tcg, withKvm.Plan);
        Assert.StartsWith("the guest showed no sign of life", withKvm.Reason, StringComparison.Ordinal);
        Assert.Equal(key, seenKey);
        Assert.Equal(new AcceleratorDecision(AcceleratorPlan.Tcg, "no /dev/kvm; using TCG"), withoutKvm);
        Assert.Null(noKey);
    }

    internal static HypervisorConfig Config(TestDirectory dir) => new()
    {
        QemuPath = dir.File("qemu", "qemu\n"),
        KernelPath = dir.File("vmlinuz", "kernel\n"),
        Accelerator = "auto",
    };
}
