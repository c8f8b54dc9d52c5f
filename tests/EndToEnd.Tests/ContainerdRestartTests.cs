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
}
