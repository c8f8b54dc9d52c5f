using System.Text.RegularExpressions;

namespace ShimV2.EndToEnd.Tests;

/// <summary>Issue 8: containerd's log says, once per pod VM, which accelerator it runs under and why.</summary>
[Collection(ContainerdCollection.Name)]
public sealed class AcceleratorLogTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    [VmFact]
    public Task Containerds_log_has_one_line_per_pod_vm_saying_which_accelerator_and_why() => Scenario.RunAsync(fixture, output, async s =>
    {
        var id = s.NewId("accel");
        var logStart = s.Containerd.LogLength();

        var r = await s.Containerd.CtrAsync(Ctr.RunArgs(id, ["--rm"], "true"), Ctr.BootTimeout);

        Assert.True(r.ExitCode == 0, r.ToString());
        var lines = s.Containerd.LogSince(logStart, maxLines: 100_000).Split('\n')
            .Where(l => l.Contains($"vm {id}: accelerator ", StringComparison.Ordinal))
            .ToList();
        var line = Assert.Single(lines);
        Assert.Matches(new Regex($@"vm {Regex.Escape(id)}: accelerator (Tcg|Kvm): \S"), line);
        if (!File.Exists("/dev/kvm"))
        {
            Assert.Contains($"vm {id}: accelerator Tcg: no /dev/kvm; using TCG", line, StringComparison.Ordinal);
        }
        else if (KvmHost.IsPvmOnly)
        {
            Assert.Contains($"vm {id}: accelerator Tcg: KVM is PVM-only (kvm_pvm)", line, StringComparison.Ordinal);
        }

        await HostState.AssertNothingLeftAsync(s.Containerd, id);
    });
}
