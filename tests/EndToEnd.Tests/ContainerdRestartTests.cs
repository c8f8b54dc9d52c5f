using System.Diagnostics;
using System.Globalization;
using Containerd.Task.V2;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 10: containerd restarted (SIGTERM, then the same containerd on the same config, root and state, as a node's
/// `systemctl restart containerd`) while a pod is being created and while an exec runs. What containerd does with
/// the pod is its own choice (1.6 tears down a task whose Create its shutdown interrupted); what the shim owes is
/// that the pod either keeps working or is gone completely: no shim, QEMU, mount, socket, sandbox directory, bundle
/// or cgroup left.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class ContainerdRestartTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    /// <summary>
    /// The restart lands while the shim's Create boots the VM (QEMU spawned, its QMP answering, the agent not yet):
    /// afterwards the task either exists and answers an exec, or it is gone and so is everything of the pod.
    /// </summary>
    [VmFact]
    public Task Containerd_restarted_during_create_leaves_a_working_task_or_nothing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var before = HostCounts.Take(c);
        var id = s.NewId("ctrdcreate");
        var logStart = c.LogLength();
        string Log() => c.LogSince(logStart, int.MaxValue);
        await using (var run = c.StartCtr(Ctr.RunArgs(id, ["-d"], "sleep", "1000")))
        {
            // The shim's boot timeline says when QEMU is up; the agent takes seconds more under TCG.
            await Eventually.TrueAsync(
                () => Log().Contains($"sandbox {id}: phase qmp-ready", StringComparison.Ordinal),
                Ctr.BootTimeout,
                () => $"the shim never logged \"sandbox {id}: phase qmp-ready\"");
            Assert.False(
                Log().Contains($"container {id}: phase created", StringComparison.Ordinal),
                "the Create had already finished when containerd was to be restarted: nothing was interrupted");
            s.Write($"restarting containerd while {id}'s Create boots the VM");
            await c.RestartAsync();
            var r = await run.WaitAsync(Ctr.BootTimeout);
            s.Write($"the run's ctr: exit {r.ExitCode}: {r.Stderr.Trim()}");
        }

        // Settled: the task is there with its shim, or it is not and neither is any process of the pod.
        var status = await Eventually.GetAsync(
            async () =>
            {
                var st = (await c.TaskStatusAsync(id)).Status;
                var processes = HostState.ProcessesMentioning(id);
                var settled = st is "CREATED" or "RUNNING" ? HostState.ShimProcesses(id).Count == 1 : processes.Count == 0;
                return (settled, $"task {st ?? "none"}, processes [{string.Join("; ", processes)}]");
            },
            Ctr.BootTimeout,
            last => $"after the restart {id} is neither a live task nor gone: {last}");
        s.Write($"after the restart: {status}");

        if (status.StartsWith("task CREATED", StringComparison.Ordinal) || status.StartsWith("task RUNNING", StringComparison.Ordinal))
        {
            if (status.StartsWith("task CREATED", StringComparison.Ordinal))
            {
                await c.CtrOkAsync(["tasks", "start", "-d", id]);
            }

            var echo = await c.CtrOkAsync(Ctr.ExecArgs(id, "after-restart", "echo", "alive"));
            Assert.Equal("alive\n", echo.Stdout);
            await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
            await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "STOPPED", Ctr.EventTimeout, () => $"{id} is not STOPPED");
            await c.CtrOkAsync(["tasks", "delete", id]);
        }
        else if (status.StartsWith("task STOPPED", StringComparison.Ordinal))
        {
            await c.CtrOkAsync(["tasks", "delete", id]);
        }

        // ctr run made the container record before the task: a user removes it as after any failed run.
        if ((await c.ContainerIdsAsync()).Contains(id))
        {
            await c.CtrOkAsync(["containers", "delete", id]);
        }

        await HostState.AssertNothingLeftAsync(c, id, TimeSpan.FromSeconds(60));
        await HostCounts.SettleAtAsync(c, before with { ContainerdFds = int.MaxValue }, TimeSpan.FromSeconds(30));
    });

    /// <summary>
    /// The restart lands while `ctr task exec` runs a long command: that ctr loses containerd and ends; the pod keeps
    /// running and answers new execs; the old exec is still the shim's (SIGKILL reaches it and its exit reaches the new
    /// containerd) or cleanly gone (not found, no process left in the guest); delete leaves nothing.
    /// </summary>
    [VmFact]
    public Task Containerd_restarted_during_an_exec_keeps_the_pod_working_and_leaves_nothing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var before = HostCounts.Take(c);
        var id = s.NewId("ctrdexec");
        await c.CtrOkAsync(Ctr.RunArgs(id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);

        await using (var started = await s.EventsAsync())
        await using (var exec = c.StartCtr(Ctr.ExecArgs(id, "sleeper", "sleep", "1001")))
        {
            await started.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exec-started sleeper");
            s.Write("restarting containerd during the exec");
            await c.RestartAsync();
            var r = await exec.WaitAsync(Ctr.EventTimeout);
            s.Write($"the exec's ctr: exit {r.ExitCode}: {r.Stderr.Trim()}");
        }

        await using var events = await s.EventsAsync();
        Assert.Equal("RUNNING", (await c.TaskStatusAsync(id)).Status);
        var again = await c.CtrOkAsync(Ctr.ExecArgs(id, "after-restart", "echo", "still"));
        Assert.Equal("still\n", again.Stdout);

        var kill = await c.CtrAsync(["tasks", "kill", "-s", "SIGKILL", "--exec-id", "sleeper", id]);
        if (kill.ExitCode == 0)
        {
            var exit = await events.WaitForAsync(
                e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exit of the exec started before the restart");
            Assert.Equal(137, exit.ExitStatus);
        }
        else
        {
            Assert.Contains("not found", kill.Stderr, StringComparison.OrdinalIgnoreCase);
        }

        // Either way, the guest runs no orphan of it.
        await Eventually.TrueAsync(
            async () => !(await c.CtrOkAsync(Ctr.ExecArgs(id, $"ps{Guid.NewGuid():N}"[..10], "ps", "-o", "args"))).Stdout.Contains("sleep 1001", StringComparison.Ordinal),
            Ctr.EventTimeout,
            () => "the exec started before the restart still runs in the guest");

        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == id, Ctr.EventTimeout, $"/tasks/exit of {id}");
        await c.CtrOkAsync(["tasks", "delete", id]);
        await c.CtrOkAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id);
        await HostCounts.SettleAtAsync(c, before with { ContainerdFds = int.MaxValue }, TimeSpan.FromSeconds(30));
    });

    /// <summary>
    /// containerd away for more than 30 s (stopped, as while `systemctl restart containerd` hangs or it crash-loops)
    /// while a container is OOM-killed: the shim holds the TaskOOM and the TaskExit it could not send, and once
    /// containerd is back it forwards both, once each, the OOM first.
    /// </summary>
    [VmFact]
    [Trait("containerd", "all")]
    public Task Events_of_an_outage_longer_than_30s_reach_containerd_when_it_returns() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = s.NewId("ctrdaway");
        var gate = Path.Combine(c.Directory, $"{id}-gate");
        Directory.CreateDirectory(gate);
        try
        {
            // The container waits for the host's word, then allocates 256 MiB under a 32 MiB limit: an OOM kill.
            await c.CtrOkAsync(
                Ctr.RunArgs(
                    id,
                    ["-d", "--memory-limit", (32L * 1024 * 1024).ToString(CultureInfo.InvariantCulture), "--mount", $"type=bind,src={gate},dst=/gate,options=rbind:rw"],
                    "sh", "-c", "until [ -e /gate/go ]; do sleep 0.1; done; dd if=/dev/zero of=/dev/null bs=256M count=1"),
                Ctr.BootTimeout);
            Assert.Equal("RUNNING", (await c.TaskStatusAsync(id)).Status);

            await c.HaltAsync();
            var away = Stopwatch.StartNew();
            s.Write("containerd stopped; the container is told to allocate");
            await File.WriteAllTextAsync(Path.Combine(gate, "go"), "");

            // The shim (asked on its own socket) has seen the exit while containerd is still away.
            await using (var shim = await ShimClient.ConnectAsync(c, id))
            {
                var state = await Eventually.GetAsync(
                    async () =>
                    {
                        var st = await shim.CallAsync<StateRequest, StateResponse>("State", new StateRequest { Id = id });
                        return (st.Status == Containerd.V1.Types.Status.Stopped, st);
                    },
                    Ctr.EventTimeout,
                    st => $"the shim still reports {id} {st.Status}");
                Assert.Equal(137u, state.ExitStatus);
            }

            Assert.False(c.IsRunning, "containerd came back by itself: the outage is not ours to time");

            // The outage is the scenario: it lasts 30 s from the halt whatever the exit took.
            var rest = TimeSpan.FromSeconds(31) - away.Elapsed;
            if (rest > TimeSpan.Zero)
            {
                await Task.Delay(rest);
            }

            s.Write($"containerd away for {away.Elapsed.TotalSeconds:0.0} s; starting it again");
            var back = c.LogLength();

            // At trace, every containerd version logs each event a shim forwards to it (1.6 already at debug).
            await c.RelaunchAsync(logLevel: "trace");
            static bool Forwarded(string line, string topic) =>
                line.Contains("event forwarded", StringComparison.Ordinal) && line.Contains($"topic={topic} ", StringComparison.Ordinal);
            var lines = await Eventually.GetAsync(
                () =>
                {
                    var log = c.LogSince(back, int.MaxValue).Split('\n');
                    return Task.FromResult((log.Any(l => Forwarded(l, "/tasks/exit")), log));
                },
                Ctr.EventTimeout,
                log => $"containerd was not forwarded /tasks/exit after it came back; its log since:\n{string.Join('\n', log.Where(l => !l.Contains("level=trace", StringComparison.Ordinal)).TakeLast(80))}");
            // Line numbers since the relaunch: the log only grows.
            List<int> At(string[] log, string topic) => log.Select((l, i) => (l, i)).Where(x => Forwarded(x.l, topic)).Select(x => x.i).ToList();
            var (oom, exit) = (At(lines, "/tasks/oom"), At(lines, "/tasks/exit"));
            s.Write($"forwarded after the outage: /tasks/oom at log lines [{string.Join(", ", oom)}], /tasks/exit at [{string.Join(", ", exit)}]");
            Assert.Single(exit);
            Assert.True(oom.Count == 1 && oom[0] < exit[0], $"expected one /tasks/oom before the /tasks/exit; /tasks/oom at [{string.Join(", ", oom)}], /tasks/exit at {exit[0]}");

            // containerd 1.6 keeps the stopped task; 1.7 and 2.x delete a shim's task that lists no process as they
            // load it ("cleaning leaked shim process"): then its /tasks/delete comes after the exit.
            var task = await Eventually.GetAsync(
                async () =>
                {
                    var st = (await c.TaskStatusAsync(id)).Status;
                    var deleted = At(c.LogSince(back, int.MaxValue).Split('\n'), "/tasks/delete");
                    return (st == "STOPPED" || (st is null && deleted.Count > 0), (st, deleted));
                },
                Ctr.EventTimeout,
                r => $"after the outage {id} is {r.st ?? "gone"}, /tasks/delete forwarded at [{string.Join(", ", r.deleted)}]");
            if (task.st == "STOPPED")
            {
                await c.CtrOkAsync(["tasks", "delete", id]);
            }
            else
            {
                Assert.True(task.deleted.Count == 1 && task.deleted[0] > exit[0], $"/tasks/delete at [{string.Join(", ", task.deleted)}], /tasks/exit at {exit[0]}");
            }

            await c.CtrOkAsync(["containers", "delete", id]);
            await HostState.AssertNothingLeftAsync(c, id);

            // Back to the collection's log level.
            await c.RestartAsync();
        }
        finally
        {
            Directory.Delete(gate, recursive: true);
        }
    });
}
