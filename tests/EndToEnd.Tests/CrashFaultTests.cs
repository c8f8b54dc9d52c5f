using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 10, faults a node meets: the shim killed (kill -9) under a running pod, and a guest that hangs (QEMU
/// stopped with SIGSTOP). Each ends with the pod gone from containerd and nothing of it left on the host.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CrashFaultTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    /// <summary>The hung-guest test's agentTimeoutSeconds: small, so the test is quick.</summary>
    private const int AgentTimeoutSeconds = 5;

    /// <summary>
    /// kill -9 of the shim at rest: containerd runs our `delete`, which must find the pod's QEMU by its pid file
    /// and identity, stop it, unmount and remove the sandbox. (It used to take the dead shim for alive: QEMU had
    /// inherited its listening socket, which kept accepting connections.)
    /// </summary>
    [VmFact]
    public Task Shim_killed_at_rest_leaves_the_task_stopped_and_nothing_of_the_pod() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("shimkill");
        await c.CtrOkAsync(Ctr.RunArgs(id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);
        await events.WaitForAsync(e => e.Topic == "/tasks/start" && e.ContainerId == id, Ctr.EventTimeout, $"/tasks/start of {id}");

        var shim = Assert.Single(HostState.ShimProcesses(id));
        var qemu = Assert.Single(HostState.QemuProcesses(id));
        var listener = ReadLink($"/proc/{shim.Pid}/fd/3");
        Assert.StartsWith("socket:", listener, StringComparison.Ordinal);
        var qemuFds = Directory.EnumerateFileSystemEntries($"/proc/{qemu.Pid}/fd").Select(ReadLink).ToList();
        Assert.DoesNotContain(listener, qemuFds);
        Assert.True(File.Exists(Path.Combine(HostState.SandboxDirectory(id), "vm", "qemu.identity")), "the shim records QEMU's identity beside its pid file");

        s.Write($"kill -9 shim {shim.Pid} (qemu {qemu.Pid})");
        Process.GetProcessById(shim.Pid).Kill();

        var exit = await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id, Ctr.EventTimeout * 2, $"/tasks/exit of {id}");
        s.Write($"exit event: {exit.Raw}");
        await Eventually.TrueAsync(
            async () => (await c.TaskStatusAsync(id)).Status is null or "STOPPED", Ctr.EventTimeout, () => $"{id} is not STOPPED after its shim died");
        await Eventually.TrueAsync(() => !Directory.Exists($"/proc/{qemu.Pid}") || IsZombie(qemu.Pid), Ctr.EventTimeout, () => $"qemu {qemu.Pid} still runs after its shim died");

        var rm = await c.CtrAsync(["tasks", "delete", id]);
        Assert.True(rm.ExitCode == 0 || rm.Stderr.Contains("not found", StringComparison.Ordinal), $"ctr task rm: {rm}");
        await c.CtrOkAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id, TimeSpan.FromSeconds(60));
        Assert.Empty(HostState.QemuProcesses(id));
    });

    /// <summary>kill -9 of the shim while Create boots the VM (QEMU running, agent not yet answering): the create
    /// fails, and `delete` stops that QEMU and removes the half-made sandbox.</summary>
    [VmFact]
    public Task Shim_killed_during_create_fails_the_run_and_leaves_nothing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = s.NewId("createkill");
        await using var run = c.StartCtr(Ctr.RunArgs(id, ["-d"], "sleep", "1000"));
        var qemu = await Eventually.GetAsync(
            () => Task.FromResult(HostState.QemuProcesses(id) is [var q] ? (true, q) : (false, null!)),
            Ctr.BootTimeout,
            _ => $"no QEMU for {id} appeared");
        var shim = Assert.Single(HostState.ShimProcesses(id));

        s.Write($"kill -9 shim {shim.Pid} while creating (qemu {qemu.Pid})");
        Process.GetProcessById(shim.Pid).Kill();

        var r = await run.WaitAsync(Ctr.EventTimeout * 2);
        Assert.True(r.ExitCode != 0, $"ctr run succeeded though its shim was killed during create: {r}");
        await Eventually.TrueAsync(() => !Directory.Exists($"/proc/{qemu.Pid}") || IsZombie(qemu.Pid), Ctr.EventTimeout, () => $"qemu {qemu.Pid} still runs after its shim died");
        await c.CtrAsync(["tasks", "delete", id]);
        await c.CtrAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id, TimeSpan.FromSeconds(60));
    });

    /// <summary>kill -9 of the shim while an exec runs: the exec's ctr ends, the task exits, nothing is left.</summary>
    [VmFact]
    public Task Shim_killed_during_exec_ends_the_exec_and_leaves_nothing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("execkill");
        await c.CtrOkAsync(Ctr.RunArgs(id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);
        await using var exec = c.StartCtr(Ctr.ExecArgs(id, "sleeper", "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exec-started sleeper");
        var shim = Assert.Single(HostState.ShimProcesses(id));
        var qemu = Assert.Single(HostState.QemuProcesses(id));

        s.Write($"kill -9 shim {shim.Pid} during an exec (qemu {qemu.Pid})");
        Process.GetProcessById(shim.Pid).Kill();

        var r = await exec.WaitAsync(Ctr.EventTimeout * 2);
        Assert.True(r.ExitCode != 0, $"the exec's ctr succeeded though its shim was killed: {r}");
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == id, Ctr.EventTimeout * 2, $"/tasks/exit of {id}");
        await Eventually.TrueAsync(() => !Directory.Exists($"/proc/{qemu.Pid}") || IsZombie(qemu.Pid), Ctr.EventTimeout, () => $"qemu {qemu.Pid} still runs after its shim died");
        await c.CtrAsync(["tasks", "delete", id]);
        await c.CtrOkAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id, TimeSpan.FromSeconds(60));
    });

    /// <summary>
    /// A hung guest (QEMU stopped with SIGSTOP): `ctr task exec` fails within the agent deadline saying the guest
    /// stopped answering; SIGKILL of the task then ends the VM (QMP quit unanswered, SIGKILL of QEMU), the task
    /// stops, and delete leaves nothing.
    /// </summary>
    [VmFact]
    public Task Hung_guest_fails_exec_at_the_deadline_and_kill_and_delete_end_the_pod() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("hung");
        var config = JsonNode.Parse(await File.ReadAllTextAsync(E2EEnvironment.RuntimeConfig))!;
        config["agentTimeoutSeconds"] = AgentTimeoutSeconds;
        var configPath = Path.Combine(c.Directory, $"{id}.json");
        await File.WriteAllTextAsync(configPath, config.ToJsonString());
        await c.CtrOkAsync(Ctr.RunArgsWithConfig(configPath, id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);
        await events.WaitForAsync(e => e.Topic == "/tasks/start" && e.ContainerId == id, Ctr.EventTimeout, $"/tasks/start of {id}");
        var qemu = Assert.Single(HostState.QemuProcesses(id));

        // Positive control: the same exec works while the guest runs.
        var ok = await c.CtrAsync(Ctr.ExecArgs(id, "before", "echo", "alive"), Ctr.CtrTimeout);
        Assert.True(ok.ExitCode == 0 && ok.Stdout == "alive\n", ok.ToString());

        s.Write($"SIGSTOP qemu {qemu.Pid}");
        await HostProcess.RunAsync("/bin/kill", ["-STOP", qemu.Pid.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10));
        try
        {
            var exec = await c.CtrAsync(Ctr.ExecArgs(id, "hung", "echo", "never"), Ctr.CtrTimeout);
            s.Write($"ctr said: {exec.Stderr.Trim()}");
            Assert.True(exec.ExitCode != 0, $"exec into a hung guest succeeded: {exec}");
            Assert.Contains($"guest agent did not answer ExecProcess within {AgentTimeoutSeconds} s: the VM may be hung", exec.Stderr, StringComparison.Ordinal);
            Assert.True(exec.Elapsed < TimeSpan.FromSeconds(AgentTimeoutSeconds + 15), $"exec failed only after {exec.Elapsed}");

            var kill = await c.CtrAsync(["tasks", "kill", "-s", "SIGKILL", id], Ctr.CtrTimeout);
            Assert.True(kill.ExitCode == 0, $"SIGKILL of a task in a hung guest: {kill}");
            Assert.True(kill.Elapsed < TimeSpan.FromSeconds(AgentTimeoutSeconds + 20), $"kill took {kill.Elapsed}");
            await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id, Ctr.EventTimeout, $"/tasks/exit of {id}");
            await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "STOPPED", Ctr.EventTimeout, () => $"{id} is not STOPPED");
            Assert.Empty(HostState.QemuProcesses(id));

            await c.CtrOkAsync(["tasks", "delete", id]);
            await c.CtrOkAsync(["containers", "delete", id]);
            await HostState.AssertNothingLeftAsync(c, id);
        }
        finally
        {
            // A failed assertion must not leave a stopped QEMU behind for the scenario's cleanup to wait on.
            if (Directory.Exists($"/proc/{qemu.Pid}"))
            {
                await HostProcess.RunAsync("/bin/kill", ["-CONT", qemu.Pid.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10));
            }
        }
    });

    private static string ReadLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget ?? string.Empty;
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
    }
}
