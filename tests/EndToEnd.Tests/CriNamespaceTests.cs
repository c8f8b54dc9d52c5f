using System.Diagnostics;
using Grpc.Core;
using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// A pod's shared namespaces through containerd's CRI plugin (issue 9): the containers of one pod share the pause
/// container's IPC and UTS namespaces, its PID namespace in CRI's POD mode (and have their own in CONTAINER mode),
/// the pod's sysctls, and localhost. A hostNetwork pod is refused at RunPodSandbox, as the README says.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CriNamespaceTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    /// <summary>The pod's sysctls, set on the sandbox config as kubelet does (IPC, mqueue and network ones).</summary>
    private static readonly Dictionary<string, string> PodSysctls = new(StringComparer.Ordinal)
    {
        ["kernel.shm_rmid_forced"] = "1",
        ["fs.mqueue.msg_max"] = "23",
        ["net.ipv4.ip_unprivileged_port_start"] = "81",
    };

    /// <summary>
    /// One pod, two containers: `top` in POD PID mode (the pause process is its PID 1, so SIGTERM from StopContainer
    /// ends it at once) and an httpd in CONTAINER PID mode (PID 1 itself). Both see one POSIX message queue (one IPC
    /// namespace), the pod's sysctls, and each other on localhost.
    /// </summary>
    [CriFact]
    [Trait("containerd", "2.1")]
    public async Task Containers_of_a_pod_share_its_namespaces_sysctls_and_localhost()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            await using var pod = await CriPod.RunAsync(client, s, "cri-ns", config =>
            {
                config.Linux.Sysctls.Add(PodSysctls);
                config.Linux.SecurityContext.NamespaceOptions.Pid = NamespaceMode.Pod;
            });
            var top = await pod.StartContainerAsync("top", c => PidMode(c, NamespaceMode.Pod), "top", "-b", "-d", "30");
            var web = await pod.StartContainerAsync(
                "web",
                c => PidMode(c, NamespaceMode.Container),
                "sh", "-c", "mkdir -p /tmp/www && echo pod-localhost > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www");

            // PID: POD mode shares the pause container's namespace, CONTAINER mode has one of its own.
            Assert.Equal("/pause", (await pod.ExecOkAsync(top, "cat", "/proc/1/cmdline")).TrimEnd('\0'));
            Assert.StartsWith("httpd\0-f\0", await pod.ExecOkAsync(web, "cat", "/proc/1/cmdline"), StringComparison.Ordinal);
            var topPids = await pod.ExecOkAsync(top, "ps", "-o", "args");
            Assert.Contains("top -b", topPids, StringComparison.Ordinal);
            Assert.DoesNotContain("httpd", topPids, StringComparison.Ordinal);

            // IPC: a POSIX message queue made in one container is in the other's /dev/mqueue (one IPC namespace).
            await pod.ExecOkAsync(top, "touch", "/dev/mqueue/pod-queue");
            Assert.Contains("QSIZE:0", await pod.ExecOkAsync(web, "cat", "/dev/mqueue/pod-queue"), StringComparison.Ordinal);

            // UTS: the pod's hostname, from the sandbox.
            Assert.Equal("cri-ns", (await pod.ExecOkAsync(web, "hostname")).Trim());
            Assert.Equal("cri-ns", (await pod.ExecOkAsync(top, "hostname")).Trim());

            foreach (var (id, name) in new[] { (top, "top"), (web, "web") })
            {
                foreach (var (key, value) in PodSysctls)
                {
                    var seen = (await pod.ExecOkAsync(id, "cat", "/proc/sys/" + key.Replace('.', '/'))).Trim();
                    Assert.True(seen == value, $"{name} sees {key} = {seen}, the pod set {value}");
                }
            }

            // Network: one pod, one localhost.
            var page = await Eventually.GetAsync(
                async () =>
                {
                    var r = await pod.ExecSyncAsync(top, 30, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/");
                    return (r.ExitCode == 0, r.Stdout.ToStringUtf8() + r.Stderr.ToStringUtf8());
                },
                TimeSpan.FromSeconds(60), r => $"the web container's httpd never answered on localhost: {r}");
            Assert.Equal("pod-localhost\n", page);

            // `top` is not PID 1 in the pod's PID namespace: SIGTERM ends it, the grace period is not waited out.
            const int Grace = 60;
            var clock = Stopwatch.StartNew();
            await pod.StopContainerAsync(top, Grace);
            clock.Stop();
            var status = await pod.ContainerStatusAsync(top);
            s.Write($"StopContainer top: {clock.Elapsed.TotalSeconds:0.0} s of a {Grace} s grace period; exit code {status.ExitCode}");
            Assert.Equal(ContainerState.ContainerExited, status.State);
            Assert.True(status.ExitCode == 128 + 15, $"top exited {status.ExitCode}, not by SIGTERM (143): SIGKILL after the grace period is 137");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(Grace), $"StopContainer waited out the {Grace} s grace period");

            await pod.StopAndRemoveAsync();
            foreach (var id in new[] { top, web, pod.Id })
            {
                await HostState.AssertNothingLeftAsync(containerd, id);
            }
        });
    }

    /// <summary>hostNetwork cannot reach into a VM: RunPodSandbox fails with the shim's one-line reason, and nothing
    /// of the attempt is left (no shim, no QEMU, no sandbox directory, no container).</summary>
    [CriVmFact]
    [Trait("containerd", "2.1")]
    public async Task A_hostNetwork_pod_is_refused_at_RunPodSandbox_with_the_reason()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            var containersBefore = await containerd.ContainerIdsAsync();
            var sandboxesBefore = SandboxDirectories();
            var vmProcessesBefore = VmProcesses().Select(p => p.Pid).ToHashSet();
            CriPod? pod = null;
            var e = await Assert.ThrowsAsync<RpcException>(async () => pod = await CriPod.RunAsync(client, s, "cri-hostnet", config =>
                config.Linux.SecurityContext.NamespaceOptions.Network = NamespaceMode.Node));
            if (pod != null)
            {
                await pod.DisposeAsync();
            }

            Assert.Contains(
                "hostNetwork pods are not supported by runtime io.containerd.csharp.v1: the pod runs in its own VM, which cannot share the host's network namespace",
                e.Status.Detail,
                StringComparison.Ordinal);

            await Eventually.GetAsync(
                async () =>
                {
                    var left = new List<string>();
                    left.AddRange((await containerd.ContainerIdsAsync()).Except(containersBefore).Select(c => $"container {c}"));
                    left.AddRange(SandboxDirectories().Except(sandboxesBefore).Select(d => $"sandbox directory {d}"));
                    left.AddRange(VmProcesses().Where(p => !vmProcessesBefore.Contains(p.Pid)).Select(p => $"process {p}"));
                    return (left.Count == 0, left);
                },
                TimeSpan.FromSeconds(30), left => $"the refused pod left:\n  {string.Join("\n  ", left)}");
        });
    }

    private static void PidMode(ContainerConfig config, NamespaceMode mode) =>
        config.Linux.SecurityContext.NamespaceOptions.Pid = mode;

    /// <summary>QEMUs and our shims: a refused pod must leave neither.</summary>
    private static IEnumerable<ProcInfo> VmProcesses() =>
        HostState.Processes().Where(p => p.Comm.StartsWith("qemu-system", StringComparison.Ordinal)
            || (p.Argv.Count > 0 && Path.GetFileName(p.Argv[0]) == "containerd-shim-csharp-v1"));

    private static HashSet<string> SandboxDirectories() =>
        Directory.Exists(E2EEnvironment.SandboxRoot)
            ? Directory.EnumerateDirectories(E2EEnvironment.SandboxRoot).ToHashSet(StringComparer.Ordinal)
            : [];
}
