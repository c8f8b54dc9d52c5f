using System.Text.Json.Nodes;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 2: a container runs in a pod VM through containerd and `ctr`: output, exit status, signals, clean removal,
/// one VM per pod, and a config error that says what is wrong. Each test boots its own pod(s): what they check is
/// the life of a whole sandbox.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class LifecycleTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Echo_hello_output_arrives() => Scenario.RunAsync(fixture, output, async s =>
    {
        await using var events = await s.EventsAsync();
        var id = s.NewId("echo");

        var r = await s.Containerd.CtrAsync(Ctr.RunArgs(id, ["--rm"], "echo", "hello"), Ctr.BootTimeout);

        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("hello\n", r.Stdout);
        await events.AssertSequenceAsync(id, ["/tasks/create", "/tasks/start", $"/tasks/exit {id} 0", "/tasks/delete 0"], Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(s.Containerd, id);
    });

    [E2EFact]
    public Task Exit_status_3_is_ctrs_exit_status() => Scenario.RunAsync(fixture, output, async s =>
    {
        await using var events = await s.EventsAsync();
        var id = s.NewId("exit3");

        var r = await s.Containerd.CtrAsync(Ctr.RunArgs(id, ["--rm"], "sh", "-c", "exit 3"), Ctr.BootTimeout);

        Assert.True(r.ExitCode == 3, r.ToString());
        await events.AssertSequenceAsync(id, ["/tasks/create", "/tasks/start", $"/tasks/exit {id} 3", "/tasks/delete 3"], Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(s.Containerd, id);
    });

    /// <summary>SIGTERM (ctr's default) on an exec'd `sleep 1000` → 143; SIGKILL on the init `sleep 1000` → 137.
    /// (A PID 1 without a handler ignores SIGTERM, in a VM as with runc: the init's SIGTERM case is in
    /// <see cref="Two_pods_get_two_vms_and_die_by_their_signals"/>, with a handler.)</summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Kill_sigterm_and_sigkill_end_sleep_with_128_plus_signal() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("kill");
        await using var run = c.StartCtr(Ctr.RunArgs(id, ["--rm"], "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/start" && e.ContainerId == id, Ctr.BootTimeout, $"/tasks/start of {id}");

        await using var exec = c.StartCtr(Ctr.ExecArgs(id, "sleeper", "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "sleeper", Ctr.EventTimeout, "/tasks/exec-started sleeper");
        await c.CtrOkAsync(["tasks", "kill", "--exec-id", "sleeper", id]);
        var execResult = await exec.WaitAsync(Ctr.EventTimeout);
        Assert.True(execResult.ExitCode == 128 + 15, $"exec killed by SIGTERM: {execResult}");

        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
        var runResult = await run.WaitAsync(Ctr.EventTimeout);
        Assert.True(runResult.ExitCode == 128 + 9, $"init killed by SIGKILL: {runResult}");

        await events.AssertSequenceAsync(id,
            ["/tasks/create", "/tasks/start", "/tasks/exec-added sleeper", "/tasks/exec-started sleeper", "/tasks/exit sleeper 143",
                $"/tasks/exit {id} 137", "/tasks/delete 137"],
            Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(c, id);
    });

    /// <summary>While the container runs its shim, socket, mounts (and for our runtime its QEMU and sandbox
    /// directory) exist; after `ctr run --rm` none of them is left.</summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Run_rm_leaves_no_qemu_shim_socket_mount_or_sandbox_directory() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("rm");
        await using var run = c.StartCtr(Ctr.RunArgs(id, ["--rm"], "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/start" && e.ContainerId == id, Ctr.BootTimeout, $"/tasks/start of {id}");

        // Positive control: what must disappear is there now.
        var processes = HostState.ProcessesMentioning(id);
        s.Write($"processes naming {id}: {string.Join("; ", processes)}");
        Assert.NotEmpty(HostState.ShimProcesses(id).Concat(processes));
        Assert.NotEmpty(HostState.MountsMentioning(id));
        var socket = c.ShimSocketPath(id);
        Assert.True(File.Exists(socket), $"shim socket {socket} (runc's naming convention) does not exist");
        Assert.Equal("unix://" + socket, File.ReadAllText(Path.Combine(c.BundleDirectory(id), "address")));
        if (E2EEnvironment.IsContainerd2)
        {
            // containerd 2.x parses start's output (our plain address: version 2, ttrpc) into bootstrap.json, which
            // it reads back to connect a sandbox's other containers to this shim.
            using var bootstrap = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(c.BundleDirectory(id), "bootstrap.json")));
            Assert.Equal(2, bootstrap.RootElement.GetProperty("version").GetInt32());
            Assert.Equal("ttrpc", bootstrap.RootElement.GetProperty("protocol").GetString());
            Assert.Equal("unix://" + socket, bootstrap.RootElement.GetProperty("address").GetString());
        }

        if (E2EEnvironment.IsVmRuntime)
        {
            Assert.Single(HostState.QemuProcesses(id));
            Assert.True(Directory.Exists(HostState.SandboxDirectory(id)), $"{HostState.SandboxDirectory(id)} does not exist");
        }

        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
        var r = await run.WaitAsync(Ctr.EventTimeout);
        Assert.True(r.ExitCode == 137, r.ToString());

        await HostState.AssertNothingLeftAsync(c, id);
        Assert.Empty(HostState.QemuProcesses(id));
        await events.AssertSequenceAsync(id, ["/tasks/create", "/tasks/start", $"/tasks/exit {id} 137", "/tasks/delete 137"], Ctr.EventTimeout);
    });

    /// <summary>Two `ctr run -d` with different ids: two sandboxes, two QEMUs (the task pid `ctr task ls` shows is
    /// the pod's QEMU, as documented), two shims; each dies by its own signal; nothing is left.</summary>
    [E2EFact]
    public Task Two_pods_get_two_vms_and_die_by_their_signals() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var a = s.NewId("poda");
        var b = s.NewId("podb");

        // a's init handles SIGTERM (PID 1 ignores signals it has no handler for); b's is a plain sleep.
        await c.CtrOkAsync(Ctr.RunArgs(a, ["-d"], "sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"), Ctr.BootTimeout);
        await c.CtrOkAsync(Ctr.RunArgs(b, ["-d"], "sleep", "1000"), Ctr.BootTimeout);

        var (statusA, pidA) = await c.TaskStatusAsync(a);
        var (statusB, pidB) = await c.TaskStatusAsync(b);
        Assert.Equal("RUNNING", statusA);
        Assert.Equal("RUNNING", statusB);
        Assert.NotEqual(pidA, pidB);
        var shimsA = HostState.ShimProcesses(a);
        var shimsB = HostState.ShimProcesses(b);
        s.Write($"shims: {a}: {string.Join("; ", shimsA)} | {b}: {string.Join("; ", shimsB)}");
        if (E2EEnvironment.IsVmRuntime)
        {
            var qemuA = Assert.Single(HostState.QemuProcesses(a));
            var qemuB = Assert.Single(HostState.QemuProcesses(b));
            s.Write($"QEMU of {a}: {qemuA.Pid} ({qemuA.RssKiB} KiB), of {b}: {qemuB.Pid} ({qemuB.RssKiB} KiB)");
            Assert.NotEqual(qemuA.Pid, qemuB.Pid);
            Assert.Equal(qemuA.Pid, pidA);
            Assert.Equal(qemuB.Pid, pidB);
            Assert.True(Directory.Exists(HostState.SandboxDirectory(a)));
            Assert.True(Directory.Exists(HostState.SandboxDirectory(b)));
        }

        Assert.Empty(shimsA.Select(p => p.Pid).Intersect(shimsB.Select(p => p.Pid)));

        await c.CtrOkAsync(["tasks", "kill", a]);
        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", b]);
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == a, Ctr.EventTimeout, $"/tasks/exit of {a}");
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == b, Ctr.EventTimeout, $"/tasks/exit of {b}");
        foreach (var id in new[] { a, b })
        {
            await c.CtrOkAsync(["tasks", "delete", id]);
            await c.CtrOkAsync(["containers", "delete", id]);
        }

        await events.AssertSequenceAsync(a, ["/tasks/create", "/tasks/start", $"/tasks/exit {a} 143", "/tasks/delete 143"], Ctr.EventTimeout);
        await events.AssertSequenceAsync(b, ["/tasks/create", "/tasks/start", $"/tasks/exit {b} 137", "/tasks/delete 137"], Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(c, a);
        await HostState.AssertNothingLeftAsync(c, b);
    });

    /// <summary>The container sees a machine of its own: QEMU's DMI vendor, a smaller memory, a kernel that booted
    /// moments ago with other parameters than the host's. (The guest kernel is the host's Debian kernel: the same
    /// `uname -r`.)</summary>
    [VmFact]
    public Task Container_runs_in_a_qemu_vm() => Scenario.RunAsync(fixture, output, async s =>
    {
        await using var events = await s.EventsAsync();
        var id = s.NewId("vm");
        const string script =
            "echo vendor=$(cat /sys/class/dmi/id/sys_vendor); echo cmdline=$(cat /proc/cmdline); "
            + "echo memtotal=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2); echo uptime=$(cut -d. -f1 /proc/uptime); "
            + "echo kernel=$(uname -r); echo hostname=$(hostname)";
        var r = await s.Containerd.CtrAsync(Ctr.RunArgs(id, ["--rm"], "sh", "-c", script), Ctr.BootTimeout);
        Assert.True(r.ExitCode == 0, r.ToString());
        var guest = r.Stdout.Split('\n').Select(l => l.Split('=', 2)).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1].Trim());
        s.Write($"guest: {string.Join(", ", guest.Select(kv => $"{kv.Key}={kv.Value}"))}");

        Assert.Equal("QEMU", guest.GetValueOrDefault("vendor"));
        Assert.NotEqual(File.ReadAllText("/proc/cmdline").Trim(), guest.GetValueOrDefault("cmdline"));
        var hostMemKiB = long.Parse(File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        var guestMemKiB = long.Parse(guest.GetValueOrDefault("memtotal") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(guestMemKiB, 1, Math.Min(hostMemKiB - 1, 4L * 1024 * 1024));
        var hostUptime = double.Parse(File.ReadAllText("/proc/uptime").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        var guestUptime = double.Parse(guest.GetValueOrDefault("uptime") ?? "-1", System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(guestUptime, 0, Math.Min(600, hostUptime));
        await events.AssertSequenceAsync(id, ["/tasks/create", "/tasks/start", $"/tasks/exit {id} 0", "/tasks/delete 0"], Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(s.Containerd, id);
    });

    /// <summary>A config whose kernelPath does not exist: ctr fails with one line naming the path; no VM starts and
    /// nothing is left.</summary>
    [VmFact]
    public Task Missing_kernel_is_a_one_line_error_naming_the_path() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("badkernel");
        var missing = $"/nonexistent/{id}/vmlinuz";
        var config = JsonNode.Parse(await File.ReadAllTextAsync(E2EEnvironment.RuntimeConfig))!;
        config["kernelPath"] = missing;
        var configPath = Path.Combine(c.Directory, $"{id}.json");
        await File.WriteAllTextAsync(configPath, config.ToJsonString());

        var r = await c.CtrAsync(Ctr.RunArgsWithConfig(configPath, id, ["--rm"], "true"), Ctr.BootTimeout);

        Assert.True(r.ExitCode != 0, $"ctr succeeded with a missing kernel: {r}");
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        s.Write($"ctr said: {r.Stderr.Trim()}");
        Assert.True(lines.Length == 1, $"expected one line on stderr, got {lines.Length}:\n{r.Stderr}");
        Assert.Contains(missing, lines[0], StringComparison.Ordinal);
        Assert.Empty(HostState.QemuProcesses(id));
        await HostState.AssertNothingLeftAsync(c, id);
        var taskEvents = events.Describe(id);
        Assert.True(taskEvents.Count == 0, $"a create that failed published [{string.Join(", ", taskEvents)}]");
    });

    /// <summary>A guest that cannot boot (an empty initrd: the kernel panics, QEMU exits): the create fails with the
    /// tail of the guest console in ctr's error (as documented), fast, and nothing is left.</summary>
    [VmFact]
    public Task Guest_that_panics_at_boot_fails_create_with_the_console_tail() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = s.NewId("panic");
        var emptyInitrd = Path.Combine(c.Directory, $"{id}.initrd");
        await File.WriteAllBytesAsync(emptyInitrd, []);
        var config = JsonNode.Parse(await File.ReadAllTextAsync(E2EEnvironment.RuntimeConfig))!;
        config["initrdPath"] = emptyInitrd;
        var configPath = Path.Combine(c.Directory, $"{id}.json");
        await File.WriteAllTextAsync(configPath, config.ToJsonString());

        var r = await c.CtrAsync(Ctr.RunArgsWithConfig(configPath, id, ["--rm"], "true"), Ctr.BootTimeout);

        s.Write($"ctr said: {r.Stderr.Trim()}");
        Assert.True(r.ExitCode != 0, $"ctr succeeded with an empty initrd: {r}");
        Assert.Contains("Kernel panic", r.Stderr, StringComparison.Ordinal);
        await HostState.AssertNothingLeftAsync(c, id);
    });
}
