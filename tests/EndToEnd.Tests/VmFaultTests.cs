using System.Diagnostics;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 10, faults of the VM itself: QEMU killed under a pod of two containers and an exec, a guest kernel that
/// panics, and a full disk under the sandbox directory. Each ends with the pod gone and nothing of it on the host.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class VmFaultTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    /// <summary>A pod of two containers, the second with a private host directory: first neither container reaches
    /// the other's files (<see cref="ContainerIsolation"/>); then kill -9 of QEMU with an exec running: every process
    /// of the pod gets its /tasks/exit (exec before its init), the exec's ctr ends, and both containers delete clean.
    /// (One VM for both: the isolation checks need the same two-container pod.)</summary>
    [VmFact]
    public Task Pod_of_two_containers_isolates_their_files_and_qemu_killed_exits_every_container_and_exec() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var pod = s.NewId("qkill");
        var second = s.NewId("qkill2");
        var privateDir = Path.Combine(c.Directory, $"{second}-private");
        Directory.CreateDirectory(privateDir);
        try
        {
            await c.CtrOkAsync(Ctr.RunArgs(pod, ["-d"], "sleep", "1000"), Ctr.BootTimeout);
            await c.CtrOkAsync(
                Ctr.RunArgs(second, ["-d", "--mount", $"type=bind,src={privateDir},dst={ContainerIsolation.PrivatePath},options=rbind:rw", .. JoinPod(pod)], "sleep", "1002"),
                Ctr.BootTimeout);
            await ContainerIsolation.AssertUnreachableAsync(s, pod, second, privateDir);
            await KillQemuUnderThePodAsync(s, events, pod, second);
        }
        finally
        {
            Directory.Delete(privateDir, recursive: true);
        }
    });

    private static async Task KillQemuUnderThePodAsync(Scenario s, CtrEvents events, string pod, string second)
    {
        var c = s.Containerd;
        await using var exec = c.StartCtr(Ctr.ExecArgs(pod, "sleeper", "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exec-started sleeper");
        Assert.Equal("RUNNING", (await c.TaskStatusAsync(second)).Status);
        var qemu = Assert.Single(HostState.QemuProcesses(pod));
        Assert.Empty(HostState.QemuProcesses(second));

        s.Write($"kill -9 qemu {qemu.Pid}");
        Process.GetProcessById(qemu.Pid).Kill();

        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == pod && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exit of the exec");
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == pod && e.ProcessId == pod, Ctr.EventTimeout, $"/tasks/exit of {pod}");
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == second && e.ProcessId == second, Ctr.EventTimeout, $"/tasks/exit of {second}");
        var podEvents = events.Describe(pod);
        Assert.True(
            podEvents.ToList().FindIndex(e => e.StartsWith("/tasks/exit sleeper", StringComparison.Ordinal))
            < podEvents.ToList().FindIndex(e => e.StartsWith($"/tasks/exit {pod}", StringComparison.Ordinal)),
            $"the init's exit came before its exec's: [{string.Join(", ", podEvents)}]");
        var r = await exec.WaitAsync(Ctr.EventTimeout);
        s.Write($"the exec's ctr: {r}");
        foreach (var id in new[] { second, pod })
        {
            await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "STOPPED", Ctr.EventTimeout, () => $"{id} is not STOPPED");
        }

        await c.CtrOkAsync(["tasks", "delete", second]);
        await c.CtrOkAsync(["containers", "delete", second]);
        await c.CtrOkAsync(["tasks", "delete", pod]);
        await c.CtrOkAsync(["containers", "delete", pod]);
        await HostState.AssertNothingLeftAsync(c, second);
        await HostState.AssertNothingLeftAsync(c, pod);
    }

    /// <summary>
    /// A guest kernel panic (sysrq "c" from a privileged exec): the guest runs with panic=1 and QEMU with -no-reboot,
    /// so QEMU exits; the exits are reported and containerd's log carries the console's reason, the panic line.
    /// </summary>
    [VmFact]
    public Task Guest_panic_reports_the_exits_with_the_panic_line() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var logStart = c.LogLength();
        var id = s.NewId("panic");
        await c.CtrOkAsync(Ctr.RunArgs(id, ["-d", "--privileged"], "sleep", "1000"), Ctr.BootTimeout);
        await using var sleeper = c.StartCtr(Ctr.ExecArgs(id, "sleeper", "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exec-started sleeper");
        var qemu = Assert.Single(HostState.QemuProcesses(id));

        s.Write("echo c > /proc/sysrq-trigger");
        await using var crash = c.StartCtr(Ctr.ExecArgs(id, "crash", "sh", "-c", "echo c > /proc/sysrq-trigger"));

        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exit of sleeper");
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == id, Ctr.EventTimeout, $"/tasks/exit of {id}");
        await Eventually.TrueAsync(() => !Directory.Exists($"/proc/{qemu.Pid}"), Ctr.EventTimeout, () => $"qemu {qemu.Pid} still runs after the guest panicked");
        const string PanicLine = "guest kernel panic: Kernel panic - not syncing: sysrq triggered crash";
        await Eventually.TrueAsync(
            () => c.LogSince(logStart, int.MaxValue).Contains(PanicLine, StringComparison.Ordinal),
            Ctr.EventTimeout,
            () => $"containerd's log does not say \"{PanicLine}\"");
        var log = c.LogSince(logStart, int.MaxValue).Split('\n');
        s.Write("log lines naming the panic:\n" + string.Join('\n', log.Where(l => l.Contains("Kernel panic", StringComparison.Ordinal))));
        Assert.Contains(log, l => l.Contains($"sandbox {id}: the VM exited: {PanicLine}", StringComparison.Ordinal));
        Assert.Contains(log, l => l.Contains("lost track of process", StringComparison.Ordinal) && l.Contains(PanicLine, StringComparison.Ordinal));

        await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "STOPPED", Ctr.EventTimeout, () => $"{id} is not STOPPED");
        await c.CtrOkAsync(["tasks", "delete", id]);
        await c.CtrOkAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id);
    });

    /// <summary>
    /// The disk under the sandbox directory is full (a 64 KiB tmpfs there, filled): the run fails with an error that
    /// says so, and the shim's cleanup takes the sandbox directory, the mounts and the VM away.
    /// </summary>
    [VmFact]
    public Task Full_disk_under_the_sandbox_fails_the_run_clearly_and_leaves_nothing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = s.NewId("diskfull");
        var dir = HostState.SandboxDirectory(id);
        Directory.CreateDirectory(dir);
        var mount = await HostProcess.RunAsync("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir], TimeSpan.FromSeconds(10));
        Assert.True(mount.ExitCode == 0, mount.ToString());
        try
        {
            await FillAsync(Path.Combine(dir, "filler"));

            var r = await c.CtrAsync(Ctr.RunArgs(id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);
            s.Write($"ctr said: {r.Stderr.Trim()}");
            Assert.True(r.ExitCode != 0, $"ctr run succeeded on a full disk: {r}");
            Assert.Contains("no space left on device", r.Stderr, StringComparison.OrdinalIgnoreCase);
            Assert.Contains(dir, r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
            Assert.Empty(HostState.QemuProcesses(id));

            await c.CtrAsync(["tasks", "delete", id]);
            await c.CtrAsync(["containers", "delete", id]);
            await HostState.AssertNothingLeftAsync(c, id);
        }
        finally
        {
            if (HostState.MountsMentioning(id).Count > 0)
            {
                await HostProcess.RunAsync("umount", ["-l", dir], TimeSpan.FromSeconds(10));
            }

            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    });

    /// <summary>`ctr run` flags that put a container into <paramref name="pod"/>'s sandbox, as CRI annotates one.</summary>
    private static string[] JoinPod(string pod) =>
        ["--annotation", $"io.kubernetes.cri.sandbox-id={pod}", "--annotation", "io.kubernetes.cri.container-type=container"];

    /// <summary>Writes zeros until the file system is full.</summary>
    private static async Task FillAsync(string path)
    {
        var block = new byte[4096];
        await using var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        try
        {
            while (true)
            {
                await f.WriteAsync(block);
                await f.FlushAsync();
            }
        }
        catch (IOException)
        {
            // ENOSPC: full.
        }

        Assert.True(f.Length > 0, $"nothing could be written to {path} at all");
    }
}
