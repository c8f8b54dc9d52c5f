using System.Text.Json;
using System.Text.Json.Nodes;

namespace ShimV2.EndToEnd.Tests;

/// <summary>The long-running `sleep 1000` pod that <see cref="ExecTests"/> share (one VM boot for the class).</summary>
public sealed class ExecContainer : SharedContainer
{
    protected override string Name => "exec";
}

/// <summary>
/// Issue 3 on a running container: exec (output, exit code, tty + resize), stdin round trips through `cat`,
/// CloseIO, signals to one process, pause/resume, metrics, checkpoint. Every scenario's events are checked in order
/// from `ctr events`, which each test starts before it acts.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class ExecTests(ContainerdFixture fixture, ExecContainer shared, ITestOutputHelper output) : IClassFixture<ExecContainer>
{
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Exec_prints_output_and_returns_its_exit_code() => Scenario.RunAsync(fixture, output, async s =>
    {
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();

        var r = await s.Containerd.CtrAsync(Ctr.ExecArgs(id, "out1", "sh", "-c", "echo out; echo err >&2; exit 5"));

        Assert.True(r.ExitCode == 5, r.ToString());
        Assert.Equal("out\n", r.Stdout);
        Assert.Contains("err", r.Stderr, StringComparison.Ordinal);
        await events.AssertSequenceAsync(id, ["/tasks/exec-added out1", "/tasks/exec-started out1", "/tasks/exit out1 5"], Ctr.EventTimeout);
    });

    /// <summary>`ctr task exec -t` on a pty of 24x80: the guest's `stty size` sees 24 80 (the resize ctr sends right
    /// after start), then 40 100 after the test resizes the pty (SIGWINCH → ctr → ResizePty).</summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Exec_tty_sees_the_terminal_size_and_its_resize() => Scenario.RunAsync(fixture, output, async s =>
    {
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();
        // The guest polls its own terminal (a loop in the container, not a wait in the test).
        const string script =
            "until [ \"$(stty size)\" = '24 80' ]; do sleep 0.1; done; echo \"initial-$(stty size | tr ' ' x)\"; "
            + "while [ \"$(stty size)\" = '24 80' ]; do sleep 0.1; done; echo \"resized-$(stty size | tr ' ' x)\"; exit 7";
        await using var pty = Pty.Open(24, 80);
        var ctr = pty.Start(s.Containerd.CtrPath, s.Containerd.CtrPrefix.Concat(["tasks", "exec", "-t", "--exec-id", "tty1", id, "sh", "-c", script]), s.Write);

        await Eventually.TrueAsync(() => pty.Output.Contains("initial-24x80", StringComparison.Ordinal) || ctr.HasExited,
            TimeSpan.FromSeconds(60), () => $"the guest never saw 24x80; terminal so far: {pty.Output}");
        Assert.False(ctr.HasExited, $"ctr exited early; terminal: {pty.Output}");
        pty.Resize(40, 100);
        await Eventually.TrueAsync(() => pty.Output.Contains("resized-", StringComparison.Ordinal) || ctr.HasExited,
            TimeSpan.FromSeconds(60), () => $"the guest never saw the resize; terminal so far: {pty.Output}");
        var r = await ctr.WaitAsync(TimeSpan.FromSeconds(30));

        s.Write($"terminal: {pty.Output.Replace("\r", "", StringComparison.Ordinal).Replace("\n", " | ", StringComparison.Ordinal)}");
        Assert.Contains("resized-40x100", pty.Output, StringComparison.Ordinal);
        Assert.True(r.ExitCode == 7, $"{r}\nterminal: {pty.Output}");
        await events.AssertSequenceAsync(id, ["/tasks/exec-added tty1", "/tasks/exec-started tty1", "/tasks/exit tty1 7"], Ctr.EventTimeout);
    });

    /// <summary>`ctr task exec -t`: typed input reaches the guest's terminal, Ctrl-D at the start of a line ends `cat`'s
    /// input and Ctrl-C interrupts the foreground job (the shell's INT trap runs), as on a local terminal.</summary>
    [E2EFact]
    public Task Exec_tty_ctrl_d_is_eof_and_ctrl_c_interrupts() => Scenario.RunAsync(fixture, output, async s =>
    {
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();
        const string script = "echo ready; cat; echo cat-ended; trap 'echo interrupted; exit 9' INT; echo waiting; while :; do sleep 1; done";
        await using var pty = Pty.Open(24, 80);
        var ctr = pty.Start(s.Containerd.CtrPath, s.Containerd.CtrPrefix.Concat(["tasks", "exec", "-t", "--exec-id", "keys", id, "sh", "-c", script]), s.Write);

        // Typed only once the guest shell runs: ctr has made its terminal raw by then, so the keys go through it.
        await Eventually.TrueAsync(() => pty.Output.Contains("ready", StringComparison.Ordinal) || ctr.HasExited,
            TimeSpan.FromSeconds(60), () => $"the exec never started; terminal so far: {pty.Output}");
        pty.Type("typed\n\x04");
        await Eventually.TrueAsync(() => pty.Output.Contains("waiting", StringComparison.Ordinal) || ctr.HasExited,
            TimeSpan.FromSeconds(60), () => $"Ctrl-D did not end cat; terminal so far: {pty.Output}");
        Assert.False(ctr.HasExited, $"ctr exited early; terminal: {pty.Output}");
        pty.Type("\x03");
        var r = await ctr.WaitAsync(TimeSpan.FromSeconds(60));

        s.Write($"terminal: {pty.Output.Replace("\r", "", StringComparison.Ordinal).Replace("\n", " | ", StringComparison.Ordinal)}");
        var lines = pty.Output.Replace("\r", "", StringComparison.Ordinal).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Count(l => l == "typed")); // the terminal's echo, then cat's copy
        Assert.Contains("cat-ended", lines);
        Assert.Contains("^Cinterrupted", lines); // the guest terminal echoes the key, then the trap runs
        Assert.True(r.ExitCode == 9, $"{r}\nterminal: {pty.Output}");
        await events.AssertSequenceAsync(id, ["/tasks/exec-added keys", "/tasks/exec-started keys", "/tasks/exit keys 9"], Ctr.EventTimeout);
    });

    /// <summary>N MiB of random bytes through `ctr task exec ... cat`: the same bytes come back (sha256), and cat
    /// ends because ctr's CloseIO at the end of its stdin gives it EOF.</summary>
    [Trait("containerd", "all")]
    [E2ETheory]
    [InlineData(1)]
    [InlineData(100)]
    public Task Stdin_round_trip_through_cat_is_byte_exact(int mib) => Scenario.RunAsync(fixture, output, async s =>
    {
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();
        using var sent = new HashingStream();
        using var received = new HashingStream();
        var bytes = mib * 1024L * 1024;
        var execId = $"cat{mib}";

        var r = await s.Containerd.CtrAsync(Ctr.ExecArgs(id, execId, "cat"), TimeSpan.FromSeconds(60 + (mib * 5)), new ProcessOptions
        {
            Stdin = AfterExecStarted(events, execId, TestData.Random(bytes, mib, sent)),
            StdoutSink = received,
        });

        s.Write($"{mib} MiB round trip: {r.Elapsed.TotalSeconds:0.00} s, {mib / r.Elapsed.TotalSeconds:0.0} MiB/s each way");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(bytes, sent.Count);
        Assert.Equal(bytes, received.Count);
        Assert.Equal(sent.HexDigest(), received.HexDigest());
        await events.AssertSequenceAsync(id, [$"/tasks/exec-added {execId}", $"/tasks/exec-started {execId}", $"/tasks/exit {execId} 0"], Ctr.EventTimeout);
    });

    /// <summary>CloseIO: the process reads to EOF after what was sent (3 bytes), and with nothing sent at all.</summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task CloseIO_gives_the_process_eof() => Scenario.RunAsync(fixture, output, async s =>
    {
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();

        var some = await s.Containerd.CtrAsync(Ctr.ExecArgs(id, "eof1", "sh", "-c", "wc -c; echo eof"), options: new ProcessOptions
        {
            Stdin = AfterExecStarted(events, "eof1", async stdin => await stdin.WriteAsync("abc"u8.ToArray())),
        });
        var none = await s.Containerd.CtrAsync(Ctr.ExecArgs(id, "eof2", "sh", "-c", "cat; echo eof"), options: new ProcessOptions
        {
            Stdin = AfterExecStarted(events, "eof2", _ => Task.CompletedTask),
        });

        Assert.True(some.ExitCode == 0, some.ToString());
        Assert.Equal("3\neof\n", some.Stdout.Replace(" ", "", StringComparison.Ordinal));
        Assert.True(none.ExitCode == 0, none.ToString());
        Assert.Equal("eof\n", none.Stdout);
        await events.AssertSequenceAsync(id,
            ["/tasks/exec-added eof1", "/tasks/exec-started eof1", "/tasks/exit eof1 0", "/tasks/exec-added eof2", "/tasks/exec-started eof2", "/tasks/exit eof2 0"],
            Ctr.EventTimeout);
    });

    /// <summary>`ctr task kill -s SIGUSR1 --exec-id`: the exec'd sleep dies of it (128+10); the init lives on.</summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Kill_with_a_signal_reaches_one_exec() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();
        await using var exec = c.StartCtr(Ctr.ExecArgs(id, "usr1", "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "usr1", Ctr.EventTimeout, "/tasks/exec-started usr1");

        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGUSR1", "--exec-id", "usr1", id]);
        var r = await exec.WaitAsync(Ctr.EventTimeout);

        Assert.True(r.ExitCode == 128 + 10, r.ToString());
        await events.AssertSequenceAsync(id, ["/tasks/exec-added usr1", "/tasks/exec-started usr1", "/tasks/exit usr1 138"], Ctr.EventTimeout);
        Assert.Equal("RUNNING", (await c.TaskStatusAsync(id)).Status);
    });

    /// <summary>`ctr task ps` lists the container's processes (in the guest: guest pids), each exec named by its id as
    /// runc's shim names it; `ctr task kill` of an exec that already exited fails with "not found".</summary>
    [E2EFact]
    public Task Ps_names_the_execs_and_a_finished_exec_cannot_be_killed() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();
        await using var exec = c.StartCtr(Ctr.ExecArgs(id, "ps1", "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "ps1", Ctr.EventTimeout, "/tasks/exec-started ps1");

        var ps = await c.CtrOkAsync(["tasks", "ps", id]);
        var rows = ps.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(l => l.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries)).ToList();
        Assert.True(rows.All(r => r.Length == 2 && int.TryParse(r[0], out _)), ps.Stdout);
        Assert.Single(rows, r => r[1].Contains("ExecID:ps1", StringComparison.Ordinal));
        Assert.Contains(rows, r => r[1] == "-"); // the init

        var done = await c.CtrAsync(Ctr.ExecArgs(id, "done1", "true"));
        Assert.True(done.ExitCode == 0, done.ToString());
        var kill = await c.CtrAsync(["tasks", "kill", "--exec-id", "done1", id]);
        Assert.True(kill.ExitCode != 0 && kill.Stderr.Contains("not found", StringComparison.Ordinal), kill.ToString());

        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", "--exec-id", "ps1", id]);
        Assert.Equal(137, (await exec.WaitAsync(Ctr.EventTimeout)).ExitCode);
        await events.AssertSequenceAsync(id,
            ["/tasks/exec-added ps1", "/tasks/exec-started ps1", "/tasks/exec-added done1", "/tasks/exec-started done1", "/tasks/exit done1 0", "/tasks/exit ps1 137"],
            Ctr.EventTimeout);
    });

    [Trait("containerd", "all")]
    [E2EFact]
    public Task Pause_shows_paused_and_resume_runs_again() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();

        await c.CtrOkAsync(["tasks", "pause", id]);
        Assert.Equal("PAUSED", (await c.TaskStatusAsync(id)).Status);
        await c.CtrOkAsync(["tasks", "resume", id]);
        Assert.Equal("RUNNING", (await c.TaskStatusAsync(id)).Status);
        var r = await c.CtrAsync(Ctr.ExecArgs(id, "alive", "echo", "alive"));

        Assert.True(r.ExitCode == 0 && r.Stdout == "alive\n", r.ToString());
        await events.AssertSequenceAsync(id,
            ["/tasks/paused", "/tasks/resumed", "/tasks/exec-added alive", "/tasks/exec-started alive", "/tasks/exit alive 0"],
            Ctr.EventTimeout);
    });

    /// <summary>`ctr task metrics` before and after a CPU-bound exec: the container's CPU usage grows.</summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Metrics_show_cpu_usage_growing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();

        var before = await CpuUsageMicrosAsync(s, id);
        var busy = await c.CtrAsync(Ctr.ExecArgs(id, "busy", "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"),
            TimeSpan.FromSeconds(120));
        Assert.True(busy.ExitCode == 0, busy.ToString());
        var after = await CpuUsageMicrosAsync(s, id);

        s.Write($"cpu usage: {before} us -> {after} us");
        Assert.True(after > before, $"CPU usage did not grow: {before} -> {after}");
        await events.AssertSequenceAsync(id, ["/tasks/exec-added busy", "/tasks/exec-started busy", "/tasks/exit busy 0"], Ctr.EventTimeout);
    });

    /// <summary>
    /// containerd 2.x runs a container whose SandboxID names a running sandbox in that sandbox's shim without `start`:
    /// it writes the bundle's `sandbox` and `bootstrap.json`, dials the sandbox shim's address, and sends Create,
    /// Start, Wait and Delete there, but never runs `start` or `delete` and sends no Shutdown for it. (2.1's `ctr run
    /// --sandbox` only does so for a sandbox of the sandbox API, which this shim does not serve; CRI only in its
    /// "shim" sandbox mode.) The same calls here, on the shared pod's shim socket: the container runs in the pod's
    /// VM, prints, exits, is deleted with its events in order, leaves no mount, and the pod runs on.
    /// </summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Container_joined_to_the_pod_shim_without_start_runs_and_cleans_up() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var pod = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();
        var id = s.NewId("joined");
        var bundle = c.BundleDirectory(id);
        var fifos = Directory.CreateTempSubdirectory("csharp-e2e-joined-").FullName;
        var mountTarget = Path.Combine(fifos, "mnt");
        try
        {
            // A snapshot of the image, as containerd prepares one for a new container.
            using var podSnapshot = JsonDocument.Parse((await c.CtrOkAsync(["snapshots", "info", pod])).Stdout);
            var parent = podSnapshot.RootElement.GetProperty("Parent").GetString()!;
            await c.CtrOkAsync(["snapshots", "prepare", id, parent]);
            var rootfs = ParseMountCommand((await c.CtrOkAsync(["snapshots", "mounts", mountTarget, id])).Stdout);

            // The bundle as containerd 2.x lays it out for a sandboxed container.
            Directory.CreateDirectory(Path.Combine(bundle, "rootfs"));
            var spec = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(c.BundleDirectory(pod), "config.json")))!;
            spec["process"]!["args"] = new JsonArray("cat", "/proc/sys/kernel/random/boot_id");
            spec["process"]!["terminal"] = false;
            spec["annotations"] = new JsonObject { ["io.kubernetes.cri.sandbox-id"] = pod, ["io.kubernetes.cri.container-type"] = "container" };
            spec["linux"]!["cgroupsPath"] = $"/{c.Namespace}/{id}";
            await File.WriteAllTextAsync(Path.Combine(bundle, "config.json"), spec.ToJsonString());
            await File.WriteAllTextAsync(Path.Combine(bundle, "sandbox"), pod);
            var podAddress = await File.ReadAllTextAsync(Path.Combine(c.BundleDirectory(pod), "address"));
            await File.WriteAllTextAsync(Path.Combine(bundle, "bootstrap.json"), $$"""{"version":2,"address":"{{podAddress}}","protocol":"ttrpc"}""");
            var stdout = Path.Combine(fifos, "stdout");
            var mkfifo = await HostProcess.RunAsync("mkfifo", [stdout], TimeSpan.FromSeconds(10));
            Assert.True(mkfifo.ExitCode == 0, mkfifo.ToString());
            var output = Task.Run(() => File.ReadAllTextAsync(stdout));
            var shimsBefore = HostState.Processes().Count(p => Path.GetFileName(p.Argv[0]) == "containerd-shim-csharp-v1");

            await using (var shim = await ShimClient.ConnectAsync(c, pod))
            {
                var create = new Containerd.Task.V2.CreateTaskRequest { Id = id, Bundle = bundle, Stdout = stdout };
                create.Rootfs.Add(rootfs);
                await shim.CallAsync<Containerd.Task.V2.CreateTaskRequest, Containerd.Task.V2.CreateTaskResponse>("Create", create);
                await shim.CallAsync<Containerd.Task.V2.StartRequest, Containerd.Task.V2.StartResponse>("Start", new() { Id = id });
                var wait = await shim.CallAsync<Containerd.Task.V2.WaitRequest, Containerd.Task.V2.WaitResponse>("Wait", new() { Id = id });
                Assert.Equal(0u, wait.ExitStatus);
                Assert.True(HostState.MountsMentioning(id).Count > 0, "the joined container's rootfs is not mounted while it exists");
                await shim.CallAsync<Containerd.Task.V2.DeleteRequest, Containerd.Task.V2.DeleteResponse>("Delete", new() { Id = id });
            }

            // The same kernel as the pod's: it ran in the pod's VM.
            var podBoot = await c.CtrAsync(Ctr.ExecArgs(pod, "boot-id", "cat", "/proc/sys/kernel/random/boot_id"));
            Assert.True(podBoot.ExitCode == 0 && podBoot.Stdout.Length > 30, podBoot.ToString());
            Assert.Equal(podBoot.Stdout, await output.WaitAsync(Ctr.EventTimeout));
            await events.AssertSequenceAsync(id, ["/tasks/create", "/tasks/start", $"/tasks/exit {id} 0", "/tasks/delete 0"], Ctr.EventTimeout);
            await events.AssertSequenceAsync(pod, ["/tasks/exec-added boot-id", "/tasks/exec-started boot-id", "/tasks/exit boot-id 0"], Ctr.EventTimeout);
            Assert.Empty(HostState.MountsMentioning(id));
            Assert.Equal(shimsBefore, HostState.Processes().Count(p => Path.GetFileName(p.Argv[0]) == "containerd-shim-csharp-v1"));
            Assert.Equal("RUNNING", (await c.TaskStatusAsync(pod)).Status);
        }
        finally
        {
            await c.CtrAsync(["snapshots", "rm", id]);
            if (Directory.Exists(bundle))
            {
                Directory.Delete(bundle, recursive: true);
            }

            Directory.Delete(fifos, recursive: true);
        }
    });

    /// <summary>`mount -t overlay overlay /target -o a,b` (ctr snapshots mounts) as a containerd Mount.</summary>
    private static Containerd.Types.Mount ParseMountCommand(string command)
    {
        var words = command.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(words.Length >= 5 && words[0] == "mount", $"not a mount command: {command}");
        var mount = new Containerd.Types.Mount();
        for (var i = 1; i < words.Length; i++)
        {
            switch (words[i])
            {
                case "-t":
                    mount.Type = words[++i];
                    break;
                case "-o":
                    mount.Options.AddRange(words[++i].Split(','));
                    break;
                default:
                    if (mount.Source.Length == 0)
                    {
                        mount.Source = words[i];
                    }

                    break;
            }
        }

        return mount;
    }

    /// <summary>Checkpoint is documented as unsupported: the shim answers Unimplemented, which ctr reports as
    /// "not implemented"; the task runs on (ctr pauses it around the attempt and resumes it).</summary>
    [VmFact]
    public Task Checkpoint_is_unimplemented() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = await shared.GetAsync(s);
        await using var events = await s.EventsAsync();

        var r = await c.CtrAsync(["tasks", "checkpoint", id]);

        s.Write($"ctr said: {r.Stderr.Trim()}");
        Assert.True(r.ExitCode != 0, $"checkpoint succeeded: {r}");
        Assert.True(r.Stderr.Contains("not implemented", StringComparison.OrdinalIgnoreCase)
            || r.Stderr.Contains("unimplemented", StringComparison.OrdinalIgnoreCase), $"not an Unimplemented error: {r}");
        Assert.Equal("RUNNING", (await c.TaskStatusAsync(id)).Status);
        // containerd's client pauses the task around a checkpoint and resumes it whatever the outcome.
        await events.AssertSequenceAsync(id, ["/tasks/paused", "/tasks/resumed"], Ctr.EventTimeout);
    });

    /// <summary>cgroup v2 metrics carry cpu.usage_usec, v1 cpu.usage.total (ns); `ctr task metrics --format json`
    /// prints the typed message as JSON.</summary>
    internal static async Task<long> CpuUsageMicrosAsync(Scenario s, string id)
    {
        var r = await s.Containerd.CtrAsync(["tasks", "metrics", "--format", "json", id]);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        if (root.TryGetProperty("cpu", out var cpu))
        {
            if (cpu.TryGetProperty("usage_usec", out var usec))
            {
                return usec.GetInt64();
            }

            if (cpu.TryGetProperty("usage", out var usage) && usage.TryGetProperty("total", out var total))
            {
                return total.GetInt64() / 1000;
            }

            return 0; // omitempty: no usage yet
        }

        Assert.Fail($"no cpu in the metrics: {r.Stdout}");
        return 0;
    }

    /// <summary>
    /// Feeds stdin only once the exec has started. ctr (1.6) calls CloseIO when its stdin reaches EOF, but only if
    /// the exec already exists then: an EOF that comes first (an empty stdin, or a shim that drains the FIFO before
    /// Start) is never forwarded, and the process would wait for input forever.
    /// </summary>
    private static Func<Stream, Task> AfterExecStarted(CtrEvents events, string execId, Func<Stream, Task> feed) => async stdin =>
    {
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == execId, Ctr.BootTimeout, $"/tasks/exec-started {execId}");
        await feed(stdin);
    };
}
