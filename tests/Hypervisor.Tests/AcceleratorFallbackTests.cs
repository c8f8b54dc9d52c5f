using System.Diagnostics;
using System.Text;
using ShimV2.Hypervisor.Qemu;
using Xunit.Abstractions;

namespace ShimV2.Hypervisor.Tests;

/// <summary>
/// The watched KVM boot, for real: QEMU and the guest are real, only the host's KVM is not (this machine has none),
/// so a fake probe says /dev/kvm opens and, where a running "KVM" guest is needed, TCG stands in for it
/// (<see cref="KvmStandIn"/>; frozen with -S, it never shows life, as Debian's kernel under a PVM-only KVM).
/// </summary>
[Collection(QemuCollection.Name)]
public sealed class AcceleratorFallbackTests : IDisposable
{
    private static readonly TimeSpan GuestTimeout = TimeSpan.FromSeconds(90);

    private readonly ITestOutputHelper output;
    private readonly ListLoggerFactory logs;
    private readonly TestDirectory dir = new("acc");
    private readonly KvmVerdictCache cache;

    public AcceleratorFallbackTests(ITestOutputHelper output)
    {
        this.output = output;
        logs = new ListLoggerFactory(output);
        cache = new KvmVerdictCache(dir.Combine("verdicts"));
    }

    public void Dispose() => dir.Dispose();

    [QemuFact]
    public async Task A_kvm_guest_that_shows_no_life_is_stopped_and_booted_again_under_tcg_and_the_verdict_is_kept()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image);
        var host = new VmHost(new FakeHostProbe { Kvm = true, LoadedKvmModules = KvmModules.Intel }, cache) { StandIn = new KvmStandIn(Frozen: true) };

        var clock = Stopwatch.StartNew();
        var vm = await QemuVm.StartAsync(spec, logs, host, CancellationToken.None);
        try
        {
            Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(spec.Config.KvmProbeSeconds), $"fell back after {clock.Elapsed}, before the probe time");
            Assert.Equal(AcceleratorKind.Tcg, vm.Accelerator);
            Assert.DoesNotContain("-S", vm.CommandLine);
            var tcg = new MachineFragment(spec.Config.MachineType, AcceleratorKind.Tcg, spec.Config.TcgTranslationCacheMiB).Args;
            Assert.Equal(tcg, vm.CommandLine.Skip(vm.CommandLine.ToList().IndexOf("-machine")).Take(tcg.Count));
            Assert.Equal([vm.Pid], HostProcesses.WithCommandLineContaining(spec.WorkDirectory));
            await AssertGuestAnswersAsync(vm, image);

            var verdict = cache.Read(cache.KeyFor(spec.Config)!);
            Assert.Equal(new KvmVerdict(false, "the guest showed no sign of life under KVM (kvm_intel) within 2 s"), verdict);
            Assert.Equal(
                ["Warning     QemuVm: vm " + spec.SandboxId + ": accelerator Tcg: the guest showed no sign of life under KVM (kvm_intel) within 2 s; using TCG"],
                AcceleratorLines());
            Assert.True(File.Exists(Path.Combine(spec.WorkDirectory, "console.kvm.log")), "the silent attempt's console is kept");

            // The next pod on this host boot goes straight to TCG.
            Assert.Equal(AcceleratorPlan.Tcg, host.Decide(spec.Config, out _).Plan);
        }
        finally
        {
            await vm.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }

        AssertNoLeftovers(spec);
    }

    [QemuFact]
    public async Task A_kvm_guest_that_shows_life_is_kept_and_kvm_is_remembered_as_working()
    {
        var image = await GuestImage.GetAsync();

        // The stand-in is TCG, which takes seconds to reach init where KVM takes a fraction of one.
        var spec = Spec(image, probeSeconds: 60);
        var host = new VmHost(new FakeHostProbe { Kvm = true, LoadedKvmModules = KvmModules.Intel }, cache) { StandIn = new KvmStandIn(Frozen: false) };

        var vm = await QemuVm.StartAsync(spec, logs, host, CancellationToken.None);
        try
        {
            Assert.Equal(AcceleratorKind.Kvm, vm.Accelerator);
            await AssertGuestAnswersAsync(vm, image);
            Assert.Equal(new KvmVerdict(true, "KVM (kvm_intel) runs this guest kernel"), cache.Read(cache.KeyFor(spec.Config)!));
            var line = Assert.Single(AcceleratorLines());
            Assert.Matches(@"^Information QemuVm: vm \S+: accelerator Kvm: KVM \(kvm_intel\): the guest showed a sign of life after \d+\.\d s \(remembered for this host boot\)$", line);
            Assert.Equal(AcceleratorPlan.Kvm, host.Decide(spec.Config, out _).Plan);
        }
        finally
        {
            await vm.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }

        AssertNoLeftovers(spec);
    }

    [QemuWithoutKvmFact]
    public async Task Qemu_that_cannot_start_with_kvm_falls_back_to_tcg_and_the_verdict_is_kept()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image);
        var host = new VmHost(new FakeHostProbe { Kvm = true, LoadedKvmModules = KvmModules.Intel }, cache);

        var vm = await QemuVm.StartAsync(spec, logs, host, CancellationToken.None);
        try
        {
            Assert.Equal(AcceleratorKind.Tcg, vm.Accelerator);
            await AssertGuestAnswersAsync(vm, image);
            var verdict = cache.Read(cache.KeyFor(spec.Config)!)!;
            Assert.False(verdict.KvmWorks);
            Assert.StartsWith("qemu could not start the guest with KVM (kvm_intel): qemu exited during boot (exit code 1): ", verdict.Reason, StringComparison.Ordinal);
            Assert.Contains("kvm", verdict.Reason[verdict.Reason.IndexOf("exit code 1", StringComparison.Ordinal)..], StringComparison.OrdinalIgnoreCase);
            var line = Assert.Single(AcceleratorLines());
            Assert.StartsWith($"Warning     QemuVm: vm {spec.SandboxId}: accelerator Tcg: {verdict.Reason}; using TCG", line, StringComparison.Ordinal);
        }
        finally
        {
            await vm.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }

        AssertNoLeftovers(spec);
    }

    [QemuFact]
    public async Task Explicit_kvm_where_qemu_cannot_start_with_it_fails_fast_saying_why()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image, "kvm");
        var host = new VmHost(new FakeHostProbe { Kvm = true, LoadedKvmModules = KvmModules.Pvm }, cache) { StandIn = new KvmStandIn(Frozen: true) };

        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<HypervisorConfigException>(() => QemuVm.StartAsync(spec, logs, host, CancellationToken.None));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(spec.Config.BootTimeoutSeconds), $"took {clock.Elapsed}");
        Assert.Equal("accelerator is kvm but the guest showed no sign of life under KVM (kvm_pvm) within 2 s (hypervisor config field accelerator)", e.Message);
        AssertNoLeftovers(spec);

        // Known now: the next start fails at once, without a boot.
        var again = await Assert.ThrowsAsync<HypervisorConfigException>(() => QemuVm.StartAsync(spec, logs, host, CancellationToken.None));
        Assert.Equal(
            "accelerator is kvm but the guest showed no sign of life under KVM (kvm_pvm) within 2 s (seen since this host booted) (hypervisor config field accelerator)",
            again.Message);
    }

    [QemuWithoutKvmFact]
    public async Task Explicit_kvm_where_qemu_exits_with_kvm_fails_at_once_with_qemus_reason_and_leaves_nothing()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image, "kvm");
        var host = new VmHost(new FakeHostProbe { Kvm = true, LoadedKvmModules = KvmModules.Intel }, cache);

        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<HypervisorConfigException>(() => QemuVm.StartAsync(spec, logs, host, CancellationToken.None));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
        Assert.StartsWith("accelerator is kvm but qemu could not start the guest with KVM (kvm_intel): qemu exited during boot (exit code 1): ", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("(hypervisor config field accelerator)", e.Message, StringComparison.Ordinal);
        Assert.Empty(AcceleratorLines());
        AssertNoLeftovers(spec);
    }

    private static async Task AssertGuestAnswersAsync(QemuVm vm, GuestImage image)
    {
        using var guest = new CancellationTokenSource(GuestTimeout);
        await using var channel = await vm.ConnectAgentAsync(guest.Token);
        using var reader = new StreamReader(channel, Encoding.UTF8, false, 256, leaveOpen: true);
        Assert.Equal($"{GuestImage.HelloPrefix} {image.KernelVersion}", await reader.ReadLineAsync(guest.Token));
    }

    private static void AssertNoLeftovers(VmSpec spec)
    {
        Assert.Empty(HostProcesses.WithCommandLineContaining(spec.WorkDirectory));
        Assert.False(File.Exists(Path.Combine(spec.WorkDirectory, "qmp.sock")), "qmp.sock left behind");
        Assert.False(File.Exists(Path.Combine(spec.WorkDirectory, "agent.sock")), "agent.sock left behind");
        Assert.False(File.Exists(Path.Combine(spec.WorkDirectory, "qemu.pid")), "qemu.pid left behind");
    }

    private string[] AcceleratorLines() =>
        logs.Lines.Where(l => l.Contains(": accelerator ", StringComparison.Ordinal)).Select(l => l[(l.IndexOf(' ', StringComparison.Ordinal) + 1)..]).ToArray();

    private VmSpec Spec(GuestImage image, string accelerator = "auto", int probeSeconds = 2)
    {
        var id = $"acc-{Guid.NewGuid():N}"[..16];
        output.WriteLine($"sandbox {id} in {dir.Path}");
        return new VmSpec
        {
            SandboxId = id,
            WorkDirectory = dir.Combine("w"),
            Config = new HypervisorConfig
            {
                QemuPath = GuestImage.QemuPath,
                KernelPath = image.KernelPath,
                InitrdPath = image.InitrdPath,
                MemoryMiB = 256,
                Accelerator = accelerator,
                AgentTransport = "virtio-serial",
                BootTimeoutSeconds = 30,
                KvmProbeSeconds = probeSeconds,
            },
        };
    }
}
