using System.Net;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Several pods on one node at once: each gets a VM, a shim and an address of its own, and works; torn down
/// together (as kubelet's pod workers do), nothing of any of them is left on the host. With the shipped config's
/// <c>useTemplate</c>, each pod is restored from the config's one-NIC template (issue 11 item 4; built by the
/// suite's first CRI pod) and its guest NIC has its own pod interface's MAC, not the template's. Three VM starts.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CriManyPodsTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    private static readonly string[] Sleeper = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"];

    [CriVmFact]
    [Trait("containerd", "2.1")]
    public async Task Three_pods_at_once_get_three_vms_and_shims_and_leave_nothing()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            var logStart = containerd.LogLength();
            var pods = new List<CriPod>();
            try
            {
                // One boot at a time (three TCG boots at once on 2 cores can outrun the boot timeout); then all three
                // run side by side.
                var started = new List<(CriPod Pod, string Container)>();
                for (var n = 1; n <= 3; n++)
                {
                    var pod = await CriPod.RunAsync(client, s, $"cri-many-{n}");
                    pods.Add(pod);
                    started.Add((pod, await pod.StartContainerAsync("app", Sleeper)));
                }

                var seen = new List<(string Boot, int Qemu, int Shim, string Ip, string Netns, string Mac)>();
                foreach (var (pod, container) in started)
                {
                    var boot = (await pod.ExecOkAsync(container, "cat", "/proc/sys/kernel/random/boot_id")).Trim();
                    var qemu = HostState.QemuProcesses(pod.Id);
                    var shims = HostState.ShimProcesses(pod.Id);
                    Assert.True(qemu.Count == 1, $"pod {pod.Id} has {qemu.Count} QEMU processes:\n{string.Join('\n', qemu)}");
                    Assert.True(shims.Count == 1, $"pod {pod.Id} has {shims.Count} shims:\n{string.Join('\n', shims)}");
                    var status = await pod.StatusAsync(verbose: true);
                    var ip = status.Status.Network.Ip;
                    Assert.Contains($"inet {ip}/", await pod.ExecOkAsync(container, "ip", "-o", "-4", "addr", "show"), StringComparison.Ordinal);
                    // The guest NIC is the pod's CNI veth on the wire: same MAC.
                    var guestMac = (await pod.ExecOkAsync(container, "cat", "/sys/class/net/eth0/address")).Trim();
                    var podLink = await HostProcess.RunAsync("nsenter", [$"--net={CriPod.NetnsPath(status)}", "ip", "-o", "link", "show", "eth0"], Ctr.CtrTimeout);
                    Assert.True(podLink.ExitCode == 0, podLink.ToString());
                    Assert.Contains($"link/ether {guestMac} ", podLink.Stdout, StringComparison.Ordinal);
                    seen.Add((boot, qemu[0].Pid, shims[0].Pid, ip, CriPod.NetnsPath(status), guestMac));
                    s.Write($"pod {pod.Id}: boot {boot}, qemu {qemu[0].Pid}, shim {shims[0].Pid}, ip {ip}, mac {guestMac}");
                }

                // Restored, not booted: the template path took pods with NICs too.
                var log = containerd.LogSince(logStart, int.MaxValue);
                foreach (var (pod, _) in started)
                {
                    Assert.True(log.Contains($"vm {pod.Id}: restored from VM template", StringComparison.Ordinal),
                        $"pod {pod.Id} was not restored from a template:\n{string.Join('\n', log.Split('\n').Where(l => l.Contains("template", StringComparison.OrdinalIgnoreCase)))}");
                    Assert.Contains($"sandbox {pod.Id}: phase restored at", log, StringComparison.Ordinal);
                    Assert.DoesNotContain($"sandbox {pod.Id}: phase kernel-up", log, StringComparison.Ordinal);
                }

                Assert.Equal(3, seen.Select(p => p.Boot).Distinct().Count());
                Assert.Equal(3, seen.Select(p => p.Qemu).Distinct().Count());
                Assert.Equal(3, seen.Select(p => p.Shim).Distinct().Count());
                Assert.Equal(3, seen.Select(p => p.Ip).Distinct().Count());
                Assert.Equal(3, seen.Select(p => p.Mac).Distinct().Count());

                // The pods are on one bridge: each reaches the next one's VM.
                for (var i = 0; i < 3; i++)
                {
                    var (pod, container) = started[i];
                    var next = seen[(i + 1) % 3].Ip;
                    await pod.ExecOkAsync(container, "ping", "-c", "1", "-W", "10", next);
                }

                await Task.WhenAll(started.Select(p => p.Pod.StopAndRemoveAsync()));
                foreach (var (pod, container) in started)
                {
                    await HostState.AssertNothingLeftAsync(containerd, container);
                    await HostState.AssertNothingLeftAsync(containerd, pod.Id);
                }

                foreach (var p in seen)
                {
                    Assert.False(File.Exists(p.Netns), $"network namespace {p.Netns} is still there");
                    Assert.False(File.Exists(Path.Combine(containerd.Directory, "cni", "ipam", "csharp-e2e", IPAddress.Parse(p.Ip).ToString())),
                        $"CNI still has {p.Ip} allocated");
                }
            }
            finally
            {
                foreach (var pod in pods)
                {
                    await pod.DisposeAsync();
                }
            }
        });
    }
}
