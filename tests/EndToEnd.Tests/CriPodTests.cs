using System.Diagnostics;
using System.Net;
using Grpc.Core;
using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Pods through containerd's CRI plugin, driven as kubelet drives them (our CRI client on containerd's socket, the
/// runtime handler `csharp` configured as the README says, CNI's bridge plugin): the pod starts with an IP from
/// CNI, a container runs and logs to its CRI log file, ExecSync gives output, exit code and honours its timeout,
/// status and lists say what runs, and the teardown kubelet does leaves nothing on the host. One VM boot per test.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed partial class CriPodTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    /// <summary>A container that logs one line to each stream, then idles; SIGTERM ends it with exit code 0.</summary>
    private static readonly string[] Idler =
        ["sh", "-c", "trap 'exit 0' TERM; echo started-out; echo started-err >&2; while :; do sleep 1; done"];

    private static readonly IPNetwork PodSubnet = IPNetwork.Parse("10.87.0.0/16");

    [CriFact]
    [Trait("containerd", "all")]
    public async Task A_pod_runs_a_container_through_cri_and_its_teardown_leaves_nothing()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            var version = await CriPod.Call(s, "Version", () => client.Runtime.VersionAsync(new VersionRequest(), deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync);
            Assert.Equal("containerd", version.RuntimeName);
            Assert.Equal("v1", version.RuntimeApiVersion);
            // containerd loads the CNI config from its directory by itself: NetworkReady says when it has.
            await Eventually.TrueAsync(
                async () => (await client.Runtime.StatusAsync(new StatusRequest(), deadline: CriPod.Deadline(Ctr.CtrTimeout))).Status.Conditions
                    .Any(c => c is { Type: "NetworkReady", Status: true }),
                TimeSpan.FromSeconds(30), () => "CRI never reported NetworkReady (CNI config not loaded)");
            var image = await CriPod.Call(s, $"ImageStatus {E2EEnvironment.Image}", () => client.Images.ImageStatusAsync(
                new ImageStatusRequest { Image = new ImageSpec { Image = E2EEnvironment.Image } }, deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync);
            Assert.True(image.Image is not null, $"{E2EEnvironment.Image} is not in CRI's image store (k8s.io namespace)");

            await using var pod = await CriPod.RunAsync(client, s, "cri-flow");
            var podStatus = await pod.StatusAsync(verbose: true);
            Assert.Equal(PodSandboxState.SandboxReady, podStatus.Status.State);
            Assert.Equal(E2EEnvironment.CriRuntimeHandler, podStatus.Status.RuntimeHandler);
            Assert.True(IPAddress.TryParse(podStatus.Status.Network?.Ip, out var podIp) && PodSubnet.Contains(podIp),
                $"pod IP '{podStatus.Status.Network?.Ip}' is not from the CNI bridge's {PodSubnet}");
            var netns = CriPod.NetnsPath(podStatus);
            s.Write($"pod {pod.Id}: ip {podIp}, netns {netns}");
            Assert.True(File.Exists(netns), $"the pod's network namespace {netns} does not exist");
            if (E2EEnvironment.IsVmRuntime)
            {
                Assert.Single(HostState.QemuProcesses(pod.Id));
            }

            var id = await pod.StartContainerAsync("app", Idler);

            var status = await pod.ContainerStatusAsync(id);
            Assert.Equal(ContainerState.ContainerRunning, status.State);
            Assert.True(status.StartedAt > 0, "StartedAt is not set on a running container");
            var logPath = Path.Combine(pod.LogDirectory, "app", "0.log");
            Assert.Equal(logPath, status.LogPath);
            var listed = Assert.Single(await pod.ListContainersAsync());
            Assert.Equal((id, ContainerState.ContainerRunning), (listed.Id, listed.State));

            // CRI's log format: "<RFC3339Nano time> <stream> <F|P> <text>", one line per output line.
            var log = await Eventually.GetAsync(
                () =>
                {
                    var l = File.Exists(logPath) ? File.ReadAllText(logPath) : "";
                    return Task.FromResult((l.Contains(" stdout F started-out\n", StringComparison.Ordinal) && l.Contains(" stderr F started-err\n", StringComparison.Ordinal), l));
                },
                TimeSpan.FromSeconds(30), l => $"{logPath} lacks the container's output; it has:\n{l}");
            s.Write($"container log:\n{log}");

            var exec = await pod.ExecSyncAsync(id, 60, "sh", "-c", "echo out; echo err >&2; exit 3");
            Assert.Equal(("out\n", "err\n", 3), (exec.Stdout.ToStringUtf8(), exec.Stderr.ToStringUtf8(), exec.ExitCode));

            var addresses = await pod.ExecOkAsync(id, "ip", "-o", "-4", "addr", "show");
            Assert.Contains($"inet {podIp}/", addresses, StringComparison.Ordinal);

            // ExecSync's timeout: the call fails saying so well before the command would end, and the command is
            // killed (kubelet's exec probes rely on both).
            var clock = Stopwatch.StartNew();
            var timedOut = await Assert.ThrowsAsync<RpcException>(() => pod.ExecSyncAsync(id, 2, "sleep", "97"));
            clock.Stop();
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"ExecSync with a 2 s timeout took {clock.Elapsed.TotalSeconds:0.0} s");
            Assert.True(timedOut.StatusCode == StatusCode.DeadlineExceeded || timedOut.Status.Detail.Contains("timeout", StringComparison.OrdinalIgnoreCase),
                $"ExecSync timeout error does not say so: {timedOut.StatusCode} {timedOut.Status.Detail}");
            var ps = await pod.ExecOkAsync(id, "ps", "-o", "args");
            Assert.DoesNotContain("sleep 97", ps, StringComparison.Ordinal);

            clock.Restart();
            await pod.StopContainerAsync(id, 30);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"StopContainer took {clock.Elapsed.TotalSeconds:0.0} s for a container that exits on SIGTERM");
            status = await pod.ContainerStatusAsync(id);
            Assert.Equal((ContainerState.ContainerExited, 0), (status.State, status.ExitCode));
            Assert.True(status.FinishedAt >= status.StartedAt, "FinishedAt is not after StartedAt");

            await pod.RemoveContainerAsync(id);
            Assert.Empty(await pod.ListContainersAsync());
            var gone = await Assert.ThrowsAsync<RpcException>(() => pod.ContainerStatusAsync(id));
            Assert.Equal(StatusCode.NotFound, gone.StatusCode);

            await pod.StopAndRemoveAsync();
            var pods = await client.Runtime.ListPodSandboxAsync(
                new ListPodSandboxRequest { Filter = new PodSandboxFilter { Id = pod.Id } }, deadline: CriPod.Deadline(Ctr.CtrTimeout));
            Assert.Empty(pods.Items);
            await HostState.AssertNothingLeftAsync(containerd, id);
            await HostState.AssertNothingLeftAsync(containerd, pod.Id);
            Assert.False(File.Exists(netns), $"the pod's network namespace {netns} is still there");
            Assert.False(File.Exists(Path.Combine(containerd.Directory, "cni", "ipam", "csharp-e2e", podIp!.ToString())),
                $"CNI still has {podIp} allocated");
        });
    }

    /// <summary>Two containers of one pod run in the same VM (same guest boot id, not the host's; one QEMU), and
    /// StopPodSandbox + RemovePodSandbox with both still running removes them and the VM.</summary>
    [CriVmFact]
    [Trait("containerd", "all")]
    public async Task Two_containers_of_a_pod_share_one_vm()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            await using var pod = await CriPod.RunAsync(client, s, "cri-two");
            var first = await pod.StartContainerAsync("first", Idler);
            var second = await pod.StartContainerAsync("second", Idler);

            var bootFirst = (await pod.ExecOkAsync(first, "cat", "/proc/sys/kernel/random/boot_id")).Trim();
            var bootSecond = (await pod.ExecOkAsync(second, "cat", "/proc/sys/kernel/random/boot_id")).Trim();
            var hostBoot = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
            s.Write($"boot ids: first {bootFirst}, second {bootSecond}, host {hostBoot}");
            Assert.Equal(bootFirst, bootSecond);
            Assert.NotEqual(hostBoot, bootFirst);
            var qemu = HostState.Processes().Where(p => p.Comm.StartsWith("qemu-system", StringComparison.Ordinal)
                && p.Argv.Any(a => a.Contains(pod.Id, StringComparison.Ordinal) || a.Contains(first, StringComparison.Ordinal) || a.Contains(second, StringComparison.Ordinal))).ToList();
            Assert.True(qemu.Count == 1, $"expected one QEMU for the pod, found:\n{string.Join('\n', qemu)}");
            Assert.Equal(2, (await pod.ListContainersAsync()).Count(c => c.State == ContainerState.ContainerRunning));

            await pod.StopAndRemoveAsync();
            foreach (var id in new[] { first, second, pod.Id })
            {
                await HostState.AssertNothingLeftAsync(containerd, id);
            }
        });
    }
}
