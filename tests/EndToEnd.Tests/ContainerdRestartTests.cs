namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 10: containerd restarted (SIGTERM, then the same containerd on the same root and state, as a node's
/// `systemctl restart containerd`) while a pod is being created and while an exec runs. The shim and its VM outlive
/// containerd; the new containerd reconnects to them, and the pod goes on working (or its create fails cleanly),
/// with nothing left once it is deleted. One VM serves both restarts.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class ContainerdRestartTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    [VmFact]
    public Task Containerd_restarted_during_create_and_during_an_exec_leaves_a_working_pod_and_nothing_behind() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = s.NewId("ctrdrestart");

        // 1. During Create: the VM is booting when containerd goes away.
        await using (var run = c.StartCtr(Ctr.RunArgs(id, ["-d"], "sleep", "1000")))
        {
            var qemu = await Eventually.GetAsync(
                () => Task.FromResult(HostState.QemuProcesses(id) is [var q] ? (true, q) : (false, null!)),
                Ctr.BootTimeout,
                _ => $"no QEMU for {id} appeared");
            s.Write($"restarting containerd while {id} boots (qemu {qemu.Pid})");
            await c.RestartAsync();
            var r = await run.WaitAsync(Ctr.BootTimeout);
            s.Write($"the run's ctr: exit {r.ExitCode}");
        }

        // The shim finished the Create without containerd; the new containerd found the task through the bundle.
        var (status, _) = await Eventually.GetAsync(
            async () =>
            {
                var st = await c.TaskStatusAsync(id);
                return (st.Status is "CREATED" or "RUNNING", st);
            },
            Ctr.BootTimeout,
            st => $"after the restart, {id}'s task is {st.Status ?? "missing"}, not CREATED or RUNNING");
        s.Write($"after the restart: {status}");
        if (status == "CREATED")
        {
            await c.CtrOkAsync(["tasks", "start", "-d", id]);
        }

        var echo = await c.CtrOkAsync(Ctr.ExecArgs(id, "after-create", "echo", "alive"));
        Assert.Equal("alive\n", echo.Stdout);

        // 2. During an exec: its ctr loses containerd, the exec and the pod live on in the shim.
        await using (var before = await s.EventsAsync())
        await using (var exec = c.StartCtr(Ctr.ExecArgs(id, "sleeper", "sleep", "1000")))
        {
            await before.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exec-started sleeper");
            s.Write("restarting containerd during the exec");
            await c.RestartAsync();
            await exec.WaitAsync(Ctr.EventTimeout);
        }

        await using var events = await s.EventsAsync();
        Assert.Equal("RUNNING", (await c.TaskStatusAsync(id)).Status);
        var again = await c.CtrOkAsync(Ctr.ExecArgs(id, "after-exec", "echo", "still"));
        Assert.Equal("still\n", again.Stdout);

        // The exec started before the restart is still the shim's: SIGKILL of everything reaches it, and its exit and
        // the init's arrive at the new containerd.
        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", "--all", id]);
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exit of the exec started before the restart");
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == id, Ctr.EventTimeout, $"/tasks/exit of {id}");
        await c.CtrOkAsync(["tasks", "delete", id]);
        await c.CtrOkAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id);
    });
}
