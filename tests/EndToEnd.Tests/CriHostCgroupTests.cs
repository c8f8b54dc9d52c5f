using System.Text.Json;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 9, item 7: a pod's VM on the host's cgroups. kubelet names the pod's cgroup in LinuxPodSandboxConfig
/// (cgroup_parent), containerd's CRI puts &lt;parent&gt;/&lt;sandbox id&gt; in the sandbox spec's linux.cgroupsPath,
/// and the pod's shim and QEMU live there, so kubelet's pod cgroup accounts (and limits) the whole VM; the cgroup
/// goes with the pod. One VM boot.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CriHostCgroupTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    [CriVmFact]
    [Trait("containerd", "2.1")]
    public async Task The_pods_shim_and_qemu_live_in_the_cgroup_the_sandbox_spec_names_and_it_goes_with_the_pod()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            // What kubelet (cgroupfs driver) makes before RunPodSandbox: /kubepods/besteffort/pod<uid>, under a
            // name of this run's own so no real kubelet's tree is touched.
            var podCgroup = $"/csharp-e2e-kubepods-{Environment.ProcessId}/besteffort/pod{Guid.NewGuid():N}";
            using var kubelet = HostCgroups.Create(podCgroup);
            s.Write($"kubelet's pod cgroup {podCgroup} in {string.Join(' ', HostCgroups.Hierarchies())}");

            await using var pod = await CriPod.RunAsync(client, s, "cgroup", cgroupParent: podCgroup);
            var expected = $"{podCgroup}/{pod.Id}";
            Assert.Equal(expected, SpecCgroupsPath(await pod.StatusAsync(verbose: true)));

            var qemu = Assert.Single(HostState.QemuProcesses(pod.Id));
            var shim = Assert.Single(HostState.ShimProcesses(pod.Id));
            foreach (var (what, pid) in new[] { ("QEMU", qemu.Pid), ("shim", shim.Pid) })
            {
                var paths = HostCgroups.PathsOf(pid);
                s.Write($"{what} pid {pid} cgroups: {string.Join(' ', paths)}");
                Assert.True(paths.Count > 0 && paths.All(p => p == expected),
                    $"{what} (pid {pid}) is not in {expected} in every hierarchy: {string.Join(", ", paths)}");
            }

            // kubelet's accounting of the pod covers the VM: the guest's RAM, as QEMU has touched it, is charged to
            // the pod's cgroup. The shim sets no limit of its own on the VM (the containers' limits are the guest's).
            var anon = HostState.StatusField(qemu.Pid, "RssAnon") * 1024;
            var usage = HostCgroups.MemoryUsage(podCgroup);
            s.Write($"QEMU RssAnon {anon >> 20} MiB; pod cgroup memory usage {usage >> 20} MiB");
            Assert.True(anon > 0 && usage >= anon * 9 / 10,
                $"the pod cgroup's memory usage ({usage} B) does not cover QEMU's anonymous memory ({anon} B)");
            Assert.Null(HostCgroups.MemoryLimit(expected));

            await pod.StopAndRemoveAsync();
            await HostState.AssertNothingLeftAsync(containerd, pod.Id);
            await Eventually.GetAsync(
                () =>
                {
                    var left = HostCgroups.DirectoriesOf(expected).Where(Directory.Exists).ToList();
                    return Task.FromResult((left.Count == 0, left));
                },
                TimeSpan.FromSeconds(30), left => $"the pod's cgroup is still there after RemovePodSandbox: {string.Join(' ', left)}");
            Assert.True(HostCgroups.DirectoriesOf(podCgroup).All(Directory.Exists), "kubelet's pod cgroup was removed: it is kubelet's to remove");
        });
    }

    /// <summary>linux.cgroupsPath of the sandbox's runtime spec, from PodSandboxStatus' verbose info.</summary>
    private static string? SpecCgroupsPath(Cri.V1.PodSandboxStatusResponse status)
    {
        Assert.True(status.Info.TryGetValue("info", out var info), $"PodSandboxStatus verbose has no info: {status.Info}");
        using var json = JsonDocument.Parse(info);
        return json.RootElement.TryGetProperty("runtimeSpec", out var spec) && spec.TryGetProperty("linux", out var linux)
            && linux.TryGetProperty("cgroupsPath", out var path) ? path.GetString() : null;
    }
}
