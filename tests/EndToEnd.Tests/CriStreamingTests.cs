using System.Globalization;
using System.Text.RegularExpressions;
using ShimV2.Cri;
using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// What kubectl exec / attach / logs / top and a container restart do to a running pod, through containerd's CRI
/// plugin and its streaming server (our WebSocket client speaking kubelet's channel protocol): streamed exec with
/// and without TTY and stdin, attach to a container's stdin and TTY, ReopenContainerLog after a rotation, container
/// and pod stats with real numbers, and a container re-created in the same pod while the VM keeps running. One pod,
/// one VM boot.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed partial class CriStreamingTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    /// <summary>Logs a line on each stream, then idles; SIGTERM ends it.</summary>
    private static readonly string[] Idler =
        ["sh", "-c", "trap 'exit 0' TERM; echo started-out; echo started-err >&2; while :; do sleep 1; done"];

    /// <summary>Answers every line of its stdin on stdout and stderr (so what it says goes to its log too).</summary>
    private static readonly string[] Echoer =
        ["sh", "-c", "while read -r l; do echo \"out:$l\"; echo \"err:$l\" >&2; done; echo stdin-closed"];

    [CriFact]
    [Trait("containerd", "2.1")]
    public async Task Exec_and_attach_stream_logs_reopen_stats_count_and_a_recreated_container_keeps_the_vm()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            // As kubelet does: the pod's host cgroup exists before RunPodSandbox names it as the cgroup parent.
            using var podCgroup = new KubeletPodCgroup($"csharp-e2e-{Guid.NewGuid():N}");
            await using var pod = await CriPod.RunAsync(client, s, "cri-stream", c => c.Linux.CgroupParent = podCgroup.Parent);
            var app = await pod.StartContainerAsync("app", Idler);
            var echo = await pod.StartContainerAsync("echo", c => c.Stdin = true, Echoer);
            var term = await pod.StartContainerAsync("term", c => (c.Stdin, c.Tty) = (true, true), "sh");
            var bootId = (await pod.ExecOkAsync(app, "cat", "/proc/sys/kernel/random/boot_id")).Trim();
            var qemuPid = E2EEnvironment.IsVmRuntime ? Assert.Single(HostState.QemuProcesses(pod.Id)).Pid : 0;

            await StreamedExecAsync(pod, app);
            await AttachAndReopenLogAsync(pod, echo);
            await AttachTtyAsync(pod, term);
            await StatsAsync(pod, s, app, [app, echo, term]);
            await RecreatedContainerKeepsTheVmAsync(pod, s, app, bootId, qemuPid);

            await pod.StopAndRemoveAsync();
            foreach (var id in (string[])[pod.Id, app, echo, term])
            {
                await HostState.AssertNothingLeftAsync(containerd, id);
            }
        });
    }

    /// <summary>kubectl exec: output per stream and the exit code from the error channel; stdin without a TTY
    /// (cat echoes, and ends when the client closes the session); a TTY with stdin (the resize reaches the
    /// process's terminal; the exit code comes back).</summary>
    private static async Task StreamedExecAsync(CriPod pod, string app)
    {
        await using (var exec = await pod.ExecStreamAsync(app, Streams.Stdout | Streams.Stderr, "sh", "-c", "echo out; echo err >&2; exit 3"))
        {
            var exit = await exec.WaitForExitAsync(CriStreams.Timeout);
            Assert.Equal(StreamingClient.V4Protocol, exec.Protocol);
            Assert.Equal(("out\n", "err\n", (int?)3), (exec.Stdout, exec.Stderr, exit.ExitCode));
        }

        await using (var exec = await pod.ExecStreamAsync(app, Streams.Stdout, "echo", "fine"))
        {
            var exit = await exec.WaitForExitAsync(CriStreams.Timeout);
            Assert.Equal(("fine\n", (int?)0), (exec.Stdout, exit.ExitCode));
        }

        await using (var cat = await pod.ExecStreamAsync(app, Streams.Stdin | Streams.Stdout | Streams.Stderr, "cat"))
        {
            await cat.SendStdinAsync("ping-1\n");
            await cat.WaitForOutputAsync("ping-1\n", CriStreams.Timeout);
            await cat.SendStdinAsync("ping-2\n");
            Assert.Equal("ping-1\nping-2\n", await cat.WaitForOutputAsync("ping-2\n", CriStreams.Timeout));
            Assert.False(cat.Exit.IsCompleted, "cat ended while its stdin was still open");
            await cat.CloseAsync();
        }

        // Closing the session is stdin's EOF (containerd closes an exec's stdin when its stream ends): cat is gone.
        await Eventually.GetAsync(
            async () =>
            {
                var ps = await pod.ExecOkAsync(app, "ps", "-o", "args");
                return (!ps.Split('\n').Any(l => l.Trim() == "cat"), ps);
            },
            CriStreams.Timeout, ps => $"cat still runs after its session was closed:\n{ps}");

        await using (var shell = await pod.ExecStreamAsync(app, Streams.Stdin | Streams.Stdout | Streams.Tty, "sh"))
        {
            await shell.ResizeAsync(123, 45);
            await WaitForTtySizeAsync(shell, "45 123");
            await shell.SendStdinAsync("tty\n");
            await shell.WaitForOutputAsync("/dev/pts/", CriStreams.Timeout);
            await shell.SendStdinAsync("exit 5\n");
            var exit = await shell.WaitForExitAsync(CriStreams.Timeout);
            Assert.True(exit.ExitCode == 5, $"the TTY exec's exit status is {exit}");
            Assert.Contains("\r\n", shell.Stdout, StringComparison.Ordinal);
        }
    }

    /// <summary>kubectl attach to a container started with stdin: what is sent reaches it, its stdout and stderr
    /// come back on their streams and go to its CRI log; detaching leaves it running. Then kubelet's log rotation:
    /// the log file renamed, ReopenContainerLog, and new output lands in a new file, old output stays in the old.</summary>
    private static async Task AttachAndReopenLogAsync(CriPod pod, string echo)
    {
        var logPath = Path.Combine(pod.LogDirectory, "echo", "0.log");
        await using (var attach = await pod.AttachAsync(echo, Streams.Stdin | Streams.Stdout | Streams.Stderr))
        {
            await attach.SendStdinAsync("one\n");
            await attach.WaitForOutputAsync("out:one\n", CriStreams.Timeout);
            await attach.WaitForOutputAsync("err:one\n", CriStreams.Timeout, stderr: true);
            await attach.CloseAsync();
        }

        await WaitForLogAsync(logPath, " stdout F out:one\n", " stderr F err:one\n");
        Assert.Equal(ContainerState.ContainerRunning, (await pod.ContainerStatusAsync(echo)).State);

        var rotated = logPath + ".20260101-000000";
        File.Move(logPath, rotated);
        await CriPod.Call(pod.Scenario, $"ReopenContainerLog {echo}", () => pod.Cri.Runtime.ReopenContainerLogAsync(
            new ReopenContainerLogRequest { ContainerId = echo }, deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync);
        Assert.True(File.Exists(logPath), $"ReopenContainerLog did not create a new {logPath}");

        await using (var attach = await pod.AttachAsync(echo, Streams.Stdin | Streams.Stdout))
        {
            await attach.SendStdinAsync("two\n");
            await attach.WaitForOutputAsync("out:two\n", CriStreams.Timeout);
            Assert.DoesNotContain("out:one", attach.Stdout, StringComparison.Ordinal);
            await attach.CloseAsync();
        }

        var fresh = await WaitForLogAsync(logPath, " stdout F out:two\n");
        Assert.DoesNotContain("out:one", fresh, StringComparison.Ordinal);
        var old = File.ReadAllText(rotated);
        Assert.Contains(" stdout F out:one\n", old, StringComparison.Ordinal);
        Assert.DoesNotContain("out:two", old, StringComparison.Ordinal);
    }

    /// <summary>kubectl attach -it to a container whose process has a TTY: a resize reaches its terminal, typed
    /// commands run, output comes back with the terminal's line endings.</summary>
    private static async Task AttachTtyAsync(CriPod pod, string term)
    {
        await using var attach = await pod.AttachAsync(term, Streams.Stdin | Streams.Stdout | Streams.Tty);
        await attach.ResizeAsync(77, 22);
        await WaitForTtySizeAsync(attach, "22 77");
        // The quotes keep the terminal's echo of the typed line from matching. (The init's terminal is the guest's
        // pty seen through /dev/console, so `tty` names /dev/console where runc's names /dev/pts/0.)
        await attach.SendStdinAsync("[ -t 0 ] && [ -t 1 ] && echo stdin-and-stdout-are-a-term\"\"inal\n");
        await attach.WaitForOutputAsync("stdin-and-stdout-are-a-terminal", CriStreams.Timeout);
        Assert.Contains("\r\n", attach.Stdout, StringComparison.Ordinal);
        await attach.CloseAsync();
        Assert.Equal(ContainerState.ContainerRunning, (await pod.ContainerStatusAsync(term)).State);
    }

    /// <summary>kubectl top / the kubelet summary API: ContainerStats and ListContainerStats give the guest's
    /// numbers for each container (working set above zero, CPU time growing while it works); PodSandboxStats as
    /// each containerd version gives it.</summary>
    private static async Task StatsAsync(CriPod pod, Scenario s, string app, string[] containers)
    {
        var first = await ContainerStatsAsync(pod, app);
        Assert.Equal(app, first.Attributes.Id);
        Assert.Equal("app", first.Attributes.Metadata.Name);
        Assert.True(first.Memory?.WorkingSetBytes?.Value > 0, $"working set of {app} is not above 0: {first.Memory}");
        Assert.True(first.Cpu?.UsageCoreNanoSeconds?.Value > 0, $"CPU usage of {app} is not above 0: {first.Cpu}");
        s.Write($"stats {app}: cpu {first.Cpu.UsageCoreNanoSeconds.Value} ns, working set {first.Memory.WorkingSetBytes.Value} B");

        await pod.ExecOkAsync(app, "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done");
        await Eventually.GetAsync(
            async () =>
            {
                var now = await ContainerStatsAsync(pod, app);
                return (now.Cpu?.UsageCoreNanoSeconds?.Value > first.Cpu.UsageCoreNanoSeconds.Value, now.Cpu);
            },
            TimeSpan.FromSeconds(30), cpu => $"CPU usage of {app} did not grow past {first.Cpu.UsageCoreNanoSeconds.Value} ns: {cpu}");

        var listed = await CriPod.Call(s, $"ListContainerStats pod {pod.Id}", () => pod.Cri.Runtime.ListContainerStatsAsync(
            new ListContainerStatsRequest { Filter = new ContainerStatsFilter { PodSandboxId = pod.Id } },
            deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync);
        Assert.Equal(containers.Order(), listed.Stats.Select(c => c.Attributes.Id).Order());
        foreach (var c in listed.Stats)
        {
            Assert.True(c.Memory?.WorkingSetBytes?.Value > 0 && c.Cpu?.UsageCoreNanoSeconds?.Value > 0,
                $"ListContainerStats gives {c.Attributes.Metadata.Name} no real numbers: cpu {c.Cpu}, memory {c.Memory}");
        }

        await PodSandboxStatsAsync(pod, s, containers);
    }

    /// <summary>PodSandboxStats: containerd (1.6 and 2.1 alike) reads the pod's own CPU and memory from the host
    /// cgroup named as the sandbox's cgroup parent (what is in it is the host's business: QEMU and the shim only
    /// once they are placed there), counts the processes of its running tasks (the guest's, through the shim) and
    /// lists each container's stats (the guest's numbers).</summary>
    private static async Task PodSandboxStatsAsync(CriPod pod, Scenario s, string[] containers)
    {
        var stats = (await CriPod.Call(s, $"PodSandboxStats {pod.Id}", () => pod.Cri.Runtime.PodSandboxStatsAsync(
            new PodSandboxStatsRequest { PodSandboxId = pod.Id }, deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync)).Stats;
        s.Write($"PodSandboxStats: {stats}");
        Assert.Equal(pod.Id, stats.Attributes.Id);
        Assert.True(stats.Linux?.Cpu is not null && stats.Linux.Memory is not null, $"PodSandboxStats has no pod CPU or memory: {stats.Linux}");
        Assert.True(stats.Linux.Process?.ProcessCount?.Value >= (ulong)containers.Length,
            $"PodSandboxStats counts fewer processes than the pod's {containers.Length} containers: {stats.Linux.Process}");
        Assert.Equal(containers.Order(), stats.Linux.Containers.Select(c => c.Attributes.Id).Order());
        Assert.All(stats.Linux.Containers, c => Assert.True(c.Memory?.WorkingSetBytes?.Value > 0 && c.Cpu?.UsageCoreNanoSeconds?.Value > 0,
            $"PodSandboxStats gives container {c.Attributes.Metadata.Name} no real numbers: cpu {c.Cpu}, memory {c.Memory}"));
    }

    /// <summary>kubelet restarting a container: the old one stopped and removed, a new one (attempt 1) created with
    /// the same name in the same pod. It runs in the same VM: same QEMU process, same guest boot.</summary>
    private static async Task RecreatedContainerKeepsTheVmAsync(CriPod pod, Scenario s, string app, string bootId, int qemuPid)
    {
        await pod.StopContainerAsync(app, 30);
        await pod.RemoveContainerAsync(app);
        var again = await pod.StartContainerAsync("app", c => (c.Metadata.Attempt, c.LogPath) = (1, Path.Combine("app", "1.log")), Idler);
        s.Write($"app re-created as {again}");
        Assert.NotEqual(app, again);
        var status = await pod.ContainerStatusAsync(again);
        Assert.Equal((ContainerState.ContainerRunning, 1u), (status.State, status.Metadata.Attempt));
        Assert.Equal(bootId, (await pod.ExecOkAsync(again, "cat", "/proc/sys/kernel/random/boot_id")).Trim());
        if (E2EEnvironment.IsVmRuntime)
        {
            Assert.Equal(qemuPid, Assert.Single(HostState.QemuProcesses(pod.Id)).Pid);
        }

        await WaitForLogAsync(Path.Combine(pod.LogDirectory, "app", "1.log"), " stdout F started-out\n");
    }

    private static async Task<ContainerStats> ContainerStatsAsync(CriPod pod, string id) =>
        (await CriPod.Call(pod.Scenario, $"ContainerStats {id}", () => pod.Cri.Runtime.ContainerStatsAsync(
            new ContainerStatsRequest { ContainerId = id }, deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync)).Stats;

    /// <summary>Asks the shell on <paramref name="session"/>'s terminal for its size until it is
    /// <paramref name="rowsCols"/>: the resize travels apart from stdin, so a first answer may predate it.</summary>
    private static async Task WaitForTtySizeAsync(StreamingClient session, string rowsCols)
    {
        var seen = new List<string>();
        await Eventually.TrueAsync(
            async () =>
            {
                var mark = seen.Count.ToString(CultureInfo.InvariantCulture);
                // The echoed command line has "$(stty size)" where the answer has digits or nothing: only the answer
                // matches.
                await session.SendStdinAsync($"echo size{mark} $(stty size) end\n");
                var answer = await Eventually.GetAsync(
                    () =>
                    {
                        var m = TtySizeAnswer().Matches(session.Stdout).FirstOrDefault(m => m.Groups[1].Value == mark);
                        return Task.FromResult((m is not null, m?.Groups[2].Value ?? ""));
                    },
                    CriStreams.Timeout, _ => $"no terminal size for size{mark} in: {session.Stdout}");
                seen.Add(answer);
                return answer == rowsCols;
            },
            CriStreams.Timeout, () => $"the terminal never had size {rowsCols}; stty size said: {string.Join(", ", seen)}");
    }

    /// <summary>"sizeN ROWS COLS end", or "sizeN end" when stty found no size yet (busybox fails on a 0x0 terminal,
    /// as it is until the resize arrives): then the test asks again.</summary>
    [GeneratedRegex("size([0-9]+) (?:([0-9]+ [0-9]+) )?end")]
    private static partial Regex TtySizeAnswer();

    private static Task<string> WaitForLogAsync(string path, params string[] lines) =>
        Eventually.GetAsync(
            () =>
            {
                var text = File.Exists(path) ? File.ReadAllText(path) : "";
                return Task.FromResult((lines.All(l => text.Contains(l, StringComparison.Ordinal)), text));
            },
            TimeSpan.FromSeconds(30), text => $"{path} lacks [{string.Join("|", lines).Replace("\n", "\\n", StringComparison.Ordinal)}]; it has:\n{text}");
}
