using System.Globalization;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 10, no leaks over time, through CRI: E2E_CYCLES_CRI pods (CI: 2; eng/soak.sh: 20) made and torn down as
/// kubelet does (RunPodSandbox, a container, ExecSync, StopContainer, RemoveContainer, StopPodSandbox,
/// RemovePodSandbox); after each, nothing of the pod is left and the host's counts (network devices and namespaces
/// included: CNI's veth, the VM's tap) are back where they were.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CriLeakCycleTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    [CriVmFact]
    public async Task Pods_through_cri_leave_nothing_over_cycles()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            var cycles = LeakReport.Cycles("E2E_CYCLES_CRI", 2);
            var before = HostCounts.Take(containerd);
            s.Write($"before: {before}");
            var baseline = before with { ContainerdFds = int.MaxValue };
            // CNI's bridge (csc<suffix>, cri.sh) is made by the first pod and stays until containerd_stop: it is the
            // fixture's, not a pod's, so it is part of the baseline once it exists.
            var devicesBefore = NetDeviceNames();
            var now = before;
            int? fdsAfterFirst = null;
            for (var i = 1; i <= cycles; i++)
            {
                await using var pod = await CriPod.RunAsync(client, s, $"leak-{i}");
                var id = await pod.StartContainerAsync("app", "sleep", "1000");
                Assert.Equal($"pod {i}\n", await pod.ExecOkAsync(id, "echo", $"pod {i}"));
                await pod.StopContainerAsync(id, 0);
                await pod.RemoveContainerAsync(id);
                await pod.StopAndRemoveAsync();
                await HostState.AssertNothingLeftAsync(containerd, id);
                await HostState.AssertNothingLeftAsync(containerd, pod.Id);
                var cniBridges = NetDeviceNames().Count(n => n.StartsWith("csc", StringComparison.Ordinal) && !devicesBefore.Contains(n));
                baseline = baseline with { NetDevices = before.NetDevices + cniBridges };
                now = await HostCounts.SettleAtAsync(containerd, baseline, TimeSpan.FromSeconds(30));
                if (fdsAfterFirst is null)
                {
                    fdsAfterFirst = now.ContainerdFds;
                    baseline = baseline with { ContainerdFds = now.ContainerdFds };
                }

                s.Write($"after pod {i}: {now}");
                if (i % 5 == 0 && i < cycles)
                {
                    LeakReport.Append(s, string.Create(CultureInfo.InvariantCulture, $"CRI pod {i}/{cycles}: nothing left so far; containerd fds {now.ContainerdFds}"));
                }
            }

            LeakReport.Append(s, string.Create(CultureInfo.InvariantCulture,
                $"CRI pods {cycles}: nothing left after each (process, mount, socket, sandbox dir, bundle, net device, netns, cgroup); "
                + $"containerd fds before {before.ContainerdFds}, after the first {fdsAfterFirst}, after the last {now.ContainerdFds}"));
        });
    }

    private static HashSet<string> NetDeviceNames() =>
        Directory.EnumerateFileSystemEntries("/sys/class/net").Select(Path.GetFileName).OfType<string>().ToHashSet(StringComparer.Ordinal);
}
