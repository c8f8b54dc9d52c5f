using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests.Vm;

[CollectionDefinition(Name)]
public sealed class AgentVmCollection : ICollectionFixture<AgentVm>
{
    public const string Name = "agent vm";
}

/// <summary>The agent in a real VM (TCG): containers from a busybox rootfs on the 9p share, over virtio-serial.</summary>
[Collection(AgentVmCollection.Name)]
public sealed class AgentVmTests(AgentVm vm, Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);

    [VmFact]
    public async Task Check_reports_the_guest_kernel_and_transport()
    {
        var check = await vm.Agent!.CheckAsync(new CheckRequest());
        output.WriteLine($"QEMU start to the agent's first answer: {vm.BootTime.TotalSeconds:0.00} s; console: {vm.ConsoleLog}");
        Assert.Equal("0.1.0", check.AgentVersion);
        Assert.StartsWith("6.", check.KernelRelease, StringComparison.Ordinal);
        Assert.Contains("virtio-serial", check.Transports);
    }

    [VmFact]
    public async Task Container_prints_hello_kernel_and_its_hostname_then_exits_0()
    {
        var (id, pid) = await vm.CreateAsync(["sh", "-c", "echo hello; uname -r; hostname"]);
        Assert.True(pid > 1);
        var wait = vm.Agent!.WaitProcessAsync(new WaitProcessRequest { ContainerId = id });
        var stdout = vm.ReadAllAsync(id);
        await vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var output = await stdout.WaitAsync(CallTimeout);
        var exit = await wait.WaitAsync(CallTimeout);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 3, $"stdout was \"{output}\"\n{vm.ConsoleTail()}");
        Assert.Equal("hello", lines[0]);
        Assert.StartsWith("6.", lines[1], StringComparison.Ordinal);
        Assert.Equal("box", lines[2]);
        Assert.Equal(0u, exit.ExitStatus);
        Assert.Equal(pid, exit.Pid);
        Assert.False(exit.OomKilled);
        Assert.InRange(exit.ExitedAtUnixNano, DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeMilliseconds() * 1_000_000, long.MaxValue);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task Exit_code_is_reported()
    {
        var (id, _) = await vm.CreateAsync(["sh", "-c", "echo oops >&2; exit 3"]);
        var stderr = vm.ReadAllAsync(id, stderr: true);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id }).WaitAsync(CallTimeout);
        Assert.Equal(3u, exit.ExitStatus);
        Assert.Equal("oops\n", await stderr.WaitAsync(CallTimeout));
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task Sigkill_gives_137()
    {
        var (id, _) = await vm.CreateAsync(["sleep", "1000"]);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var wait = vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id });
        await vm.Agent.SignalProcessAsync(new SignalProcessRequest { ContainerId = id, Signal = 9 });
        var exit = await wait.WaitAsync(CallTimeout);
        Assert.Equal(137u, exit.ExitStatus);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task Exec_runs_in_the_container_with_stdin_and_all_kill_ends_everything()
    {
        var (id, initPid) = await vm.CreateAsync(["sleep", "1000"]);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var initWait = vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id });

        var process = """{"args":["sh","-c","read line; echo got:$line; echo pid:$$; hostname; set -- /proc/[0-9]*; echo $#"],"env":["PATH=/bin"],"cwd":"/","user":{"uid":0,"gid":0}}""";
        var exec = await vm.Agent.ExecProcessAsync(new ExecProcessRequest
        {
            ContainerId = id,
            ExecId = "e1",
            ProcessJson = ByteString.CopyFromUtf8(process),
            Stdin = true,
            Stdout = true,
        });
        Assert.NotEqual(initPid, exec.Pid);
        var stdout = vm.ReadAllAsync(id, "e1");
        var written = await vm.Agent.WriteStdinAsync(new WriteStreamRequest { ContainerId = id, ExecId = "e1", Data = ByteString.CopyFromUtf8("ping\n") });
        Assert.Equal(5u, written.Len);
        await vm.Agent.CloseStdinAsync(new CloseStdinRequest { ContainerId = id, ExecId = "e1" });
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id, ExecId = "e1" }).WaitAsync(CallTimeout);
        Assert.Equal(0u, exit.ExitStatus);
        var lines = (await stdout.WaitAsync(CallTimeout)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("got:ping", lines[0]);
        Assert.NotEqual("pid:" + exec.Pid, lines[1]); // a pid in the container's PID namespace
        Assert.Equal("box", lines[2]);
        Assert.Equal("2", lines[3]); // sleep (pid 1) and this sh: the container's own /proc

        var list = await vm.Agent.ListProcessesAsync(new ContainerRequest { ContainerId = id });
        Assert.Contains(list.Processes, p => p.Pid == initPid && p.ExecId.Length == 0 && p.Args.SequenceEqual(new[] { "sleep", "1000" }));

        await vm.Agent.SignalProcessAsync(new SignalProcessRequest { ContainerId = id, Signal = 9, All = true });
        Assert.Equal(137u, (await initWait.WaitAsync(CallTimeout)).ExitStatus);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task Terminal_process_gets_a_pty_with_the_requested_size()
    {
        var (id, _) = await vm.CreateAsync(["sh", "-c", "stty size; tty"], terminal: true);
        await vm.Agent!.TtyWinResizeAsync(new TtyWinResizeRequest { ContainerId = id, Rows = 33, Cols = 111 });
        var stdout = vm.ReadAllAsync(id);
        await vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id }).WaitAsync(CallTimeout);
        var output = await stdout.WaitAsync(CallTimeout);
        Assert.Equal(0u, exit.ExitStatus);
        Assert.Contains("33 111", output, StringComparison.Ordinal);
        Assert.Empty((await vm.Agent.ReadStderrAsync(new ReadStreamRequest { ContainerId = id, Len = 10 })).Data);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task Cgroup_limits_stats_pause_and_update()
    {
        var (id, _) = await vm.CreateAsync(["sleep", "1000"], edit: spec =>
            spec["linux"]!["resources"] = System.Text.Json.Nodes.JsonNode.Parse("""{"memory":{"limit":67108864},"pids":{"limit":50},"cpu":{"shares":512,"quota":50000,"period":100000}}"""));
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var stats = await vm.Agent.StatsContainerAsync(new ContainerRequest { ContainerId = id });
        Assert.Equal("v2", stats.CgroupVersion);
        Assert.Equal(67108864ul, stats.MemoryLimitBytes);
        Assert.Equal(50ul, stats.PidsLimit);
        Assert.Equal(1ul, stats.PidsCurrent);

        await vm.Agent.UpdateContainerAsync(new UpdateContainerRequest { ContainerId = id, ResourcesJson = ByteString.CopyFromUtf8("""{"pids":{"limit":20}}""") });
        Assert.Equal(20ul, (await vm.Agent.StatsContainerAsync(new ContainerRequest { ContainerId = id })).PidsLimit);
        var bad = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.UpdateContainerAsync(
            new UpdateContainerRequest { ContainerId = id, ResourcesJson = ByteString.CopyFromUtf8("{not json") }));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, bad.Code);

        await vm.Agent.PauseContainerAsync(new ContainerRequest { ContainerId = id });
        await vm.Agent.ResumeContainerAsync(new ContainerRequest { ContainerId = id });

        var wait = vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id });
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        Assert.Equal(137u, (await wait.WaitAsync(CallTimeout)).ExitStatus);
        var gone = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.StatsContainerAsync(new ContainerRequest { ContainerId = id }));
        Assert.Equal(TtrpcStatusCode.NotFound, gone.Code);
    }

    [VmFact]
    public async Task Errors_carry_codes_a_user_can_act_on()
    {
        var unknown = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent!.WaitProcessAsync(new WaitProcessRequest { ContainerId = "nope" }));
        Assert.Equal(TtrpcStatusCode.NotFound, unknown.Code);

        var id = vm.NewContainer("bad");
        var malformed = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent!.CreateContainerAsync(new CreateContainerRequest
        {
            ContainerId = id,
            OciSpecJson = ByteString.CopyFromUtf8("{\"process\":"),
            RootfsGuestPath = AgentVm.GuestRootfs(id),
        }));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, malformed.Code);

        // Like runc create: the executable is looked up before the container is reported created.
        var missing = await Assert.ThrowsAsync<TtrpcException>(() => vm.CreateAsync(["no-such-binary"]));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, missing.Code);
        Assert.Contains("\"no-such-binary\": executable file not found in $PATH", missing.Message, StringComparison.Ordinal);

        var (created, _) = await vm.CreateAsync(["true"]);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = created });
        var twice = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = created }));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, twice.Code);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = created });
        var again = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = created }));
        Assert.Equal(TtrpcStatusCode.NotFound, again.Code);
    }

    [VmFact]
    public async Task Oom_kill_is_reported_by_wait_stats_and_the_oom_event()
    {
        // Run from tmpfs: a shell whose text lives on the 9p share is evicted and re-read under memory pressure,
        // and the cgroup thrashes for minutes before the OOM killer acts.
        var (id, _) = await vm.CreateAsync(["sh", "-c", "cp /bin/busybox /run/busybox && exec /run/busybox sh -c 'x=$(yes)'"], edit: spec =>
            spec["linux"]!["resources"] = System.Text.Json.Nodes.JsonNode.Parse("""{"memory":{"limit":16777216}}"""));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var oom = vm.Agent!.GetOomEventAsync(new GetOomEventRequest(), null, timeout.Token);
        await vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id }, null, timeout.Token);
        Assert.Equal(137u, exit.ExitStatus);
        Assert.True(exit.OomKilled, vm.ConsoleTail());
        Assert.Equal(id, (await oom).ContainerId);
        Assert.True((await vm.Agent.StatsContainerAsync(new ContainerRequest { ContainerId = id })).OomKillCount >= 1);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    /// <summary>The guest applies no AppArmor profile: the agent's warning is a log record for the host, tagged with the
    /// container by its id (not in the text), and records stay until acknowledged.</summary>
    [VmFact]
    public async Task A_spec_field_the_guest_cannot_honour_is_a_log_record_for_the_host()
    {
        var (id, _) = await vm.CreateAsync(["true"], edit: spec => spec["process"]!["apparmorProfile"] = "vm-test-profile");
        using var timeout = new CancellationTokenSource(CallTimeout);
        ulong after = 0;
        LogRecord? found = null;
        while (found is null)
        {
            var batch = await vm.Agent!.GetLogRecordsAsync(new GetLogRecordsRequest { AfterSequence = after }, null, timeout.Token);
            found = batch.Records.FirstOrDefault(r => r.ContainerId == id);
            after = batch.Records.Count > 0 ? batch.Records[^1].Sequence : after;
        }

        Assert.Equal(GuestLogLevel.Warning, found.Level);
        Assert.Equal("", found.ExecId);
        Assert.Equal("service", found.Category);
        Assert.StartsWith("AppArmor profile \"vm-test-profile\" not applied", found.Message, StringComparison.Ordinal);
        Assert.InRange(found.TimeUnixNano, DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeMilliseconds() * 1_000_000, long.MaxValue);

        // Acknowledged: not answered again.
        var rest = await vm.Agent!.GetLogRecordsAsync(new GetLogRecordsRequest { AfterSequence = after, NoWait = true }, null, timeout.Token);
        Assert.DoesNotContain(rest.Records, r => r.ContainerId == id);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task Seccomp_profile_filters_the_container_and_its_execs()
    {
        // containerd's default profile (as `ctr run --seccomp` sends it), with mkdir refused first.
        var profile = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "containerd-1.6-default-seccomp.json")))!.AsObject();
        profile["syscalls"]!.AsArray().Insert(0, JsonNode.Parse("""{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}"""));
        var script = "grep Seccomp: /proc/self/status; mkdir /x || echo mkdir failed; id -u";
        var (id, _) = await vm.CreateAsync(["sh", "-c", script], edit: spec => spec["linux"]!["seccomp"] = profile);
        var stdout = vm.ReadAllAsync(id);
        var stderr = vm.ReadAllAsync(id, stderr: true);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id }).WaitAsync(CallTimeout);
        var output = await stdout.WaitAsync(CallTimeout);
        Assert.True(exit.ExitStatus == 0, $"exit {exit.ExitStatus}: {output}{await stderr}\n{vm.ConsoleTail()}");
        Assert.Equal(["Seccomp:\t2", "mkdir failed", "0"], output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("Permission denied", await stderr.WaitAsync(CallTimeout), StringComparison.Ordinal);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });

        // An exec gets the container's filter too; without no_new_privs it is loaded before privileges drop.
        var (id2, _) = await vm.CreateAsync(["sleep", "1000"], edit: spec => spec["linux"]!["seccomp"] = profile.DeepClone());
        await vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = id2 });
        var process = """{"args":["sh","-c","grep Seccomp: /proc/self/status; mkdir /y || echo mkdir failed; id -u"],"env":["PATH=/bin"],"cwd":"/","user":{"uid":65534,"gid":65534},"noNewPrivileges":false}""";
        await vm.Agent.ExecProcessAsync(new ExecProcessRequest { ContainerId = id2, ExecId = "e", ProcessJson = ByteString.CopyFromUtf8(process), Stdout = true });
        var execOut = vm.ReadAllAsync(id2, "e");
        var execExit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id2, ExecId = "e" }).WaitAsync(CallTimeout);
        Assert.Equal(0u, execExit.ExitStatus);
        Assert.Equal(["Seccomp:\t2", "mkdir failed", "65534"], (await execOut.WaitAsync(CallTimeout)).Split('\n', StringSplitOptions.RemoveEmptyEntries));
        await vm.Agent.SignalProcessAsync(new SignalProcessRequest { ContainerId = id2, Signal = 9, All = true });
        await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id2 }).WaitAsync(CallTimeout);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id2 });
    }

    [VmFact]
    public async Task A_seccomp_profile_the_guest_cannot_apply_fails_create_with_the_reason()
    {
        var e = await Assert.ThrowsAsync<TtrpcException>(() => vm.CreateAsync(["true"], edit: spec =>
            spec["linux"]!["seccomp"] = JsonNode.Parse("""{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/seccomp-agent.sock"}""")));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Contains("seccomp: a seccomp agent", e.Message, StringComparison.Ordinal);
    }

    [VmFact]
    public async Task Exec_with_a_terminal_and_a_user()
    {
        var (id, _) = await vm.CreateAsync(["sleep", "1000"]);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var process = """{"args":["sh","-c","id; tty; pwd"],"env":["PATH=/bin"],"cwd":"/bin","user":{"uid":65534,"gid":65534,"additionalGids":[1]},"terminal":true}""";
        await vm.Agent.ExecProcessAsync(new ExecProcessRequest
        {
            ContainerId = id,
            ExecId = "tty",
            ProcessJson = ByteString.CopyFromUtf8(process),
            Terminal = true,
            Stdout = true,
        });
        var output = await vm.ReadAllAsync(id, "tty").WaitAsync(CallTimeout);
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id, ExecId = "tty" }).WaitAsync(CallTimeout);
        Assert.True(exit.ExitStatus == 0, output);
        Assert.Equal(["uid=65534(nobody) gid=65534(nogroup) groups=1", "/dev/pts/0", "/bin"], output.Split("\r\n", StringSplitOptions.RemoveEmptyEntries));
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task Removing_a_never_started_container_kills_its_init_and_a_finished_process_cannot_be_signalled()
    {
        var (id, _) = await vm.CreateAsync(["sh", "-c", "echo never"]);
        var wait = vm.Agent!.WaitProcessAsync(new WaitProcessRequest { ContainerId = id });
        var stdout = vm.ReadAllAsync(id);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        Assert.Equal(137u, (await wait.WaitAsync(CallTimeout)).ExitStatus);
        Assert.Equal("", await stdout.WaitAsync(CallTimeout));

        // SIGTERM before start ends the waiting process too (143), although it is PID 1 of its namespace.
        var (termed, _) = await vm.CreateAsync(["sleep", "1000"]);
        var termedWait = vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = termed });
        await vm.Agent.SignalProcessAsync(new SignalProcessRequest { ContainerId = termed, Signal = 15 });
        Assert.Equal(143u, (await termedWait.WaitAsync(CallTimeout)).ExitStatus);
        var late = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = termed }));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, late.Code);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = termed });

        var (done, _) = await vm.CreateAsync(["true"]);
        await vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = done });
        await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = done }).WaitAsync(CallTimeout);
        var signal = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.SignalProcessAsync(new SignalProcessRequest { ContainerId = done, Signal = 15 }));
        Assert.Equal(TtrpcStatusCode.NotFound, signal.Code);
        var pause = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.PauseContainerAsync(new ContainerRequest { ContainerId = done }));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, pause.Code);
        var exec = await Assert.ThrowsAsync<TtrpcException>(() => vm.Agent.ExecProcessAsync(new ExecProcessRequest
        {
            ContainerId = done,
            ExecId = "late",
            ProcessJson = ByteString.CopyFromUtf8("""{"args":["true"]}"""),
        }));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, exec.Code);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = done });
        await vm.Agent.OnlineCpuMemAsync(new OnlineCpuMemRequest());
    }

    [VmFact]
    public async Task A_rootfs_and_a_bind_source_the_host_bind_mounted_into_the_share_are_used()
    {
        var (id, hosts) = vm.NewBindMountedContainer("bound", "10.1.2.3 from-the-host\n");
        var spec = AgentVm.Spec(["sh", "-c", "cat /etc/hosts; echo x > /etc/hosts || echo read-only"], edit: s =>
            s["mounts"]!.AsArray().Add(System.Text.Json.Nodes.JsonNode.Parse(
                $$"""{"destination":"/etc/hosts","type":"bind","source":"{{hosts}}","options":["rbind","ro"]}""")));
        await vm.Agent!.CreateContainerAsync(new CreateContainerRequest
        {
            ContainerId = id,
            OciSpecJson = ByteString.CopyFrom(spec),
            RootfsGuestPath = AgentVm.GuestRootfs(id),
            Stdout = true,
            Stderr = true,
        });
        var stdout = vm.ReadAllAsync(id);
        await vm.Agent.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id }).WaitAsync(CallTimeout);
        Assert.Equal(0u, exit.ExitStatus);
        Assert.Equal("10.1.2.3 from-the-host\nread-only\n", await stdout.WaitAsync(CallTimeout));
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    [VmFact]
    public async Task An_rshared_rootfs_is_entered_with_pivot_root_and_is_shared_in_the_container()
    {
        // Before the guest left its initramfs this failed ("move rootfs ... to /: Invalid argument").
        var (id, _) = await vm.CreateAsync(["cat", "/proc/self/mountinfo"], edit: s => s["linux"]!["rootfsPropagation"] = "rshared", prefix: "rshared");
        var stdout = vm.ReadAllAsync(id);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var exit = await vm.Agent.WaitProcessAsync(new WaitProcessRequest { ContainerId = id }).WaitAsync(CallTimeout);
        var mountinfo = await stdout.WaitAsync(CallTimeout);
        Assert.True(exit.ExitStatus == 0, $"exit {exit.ExitStatus}\n{mountinfo}\n{vm.ConsoleTail()}");
        var root = mountinfo.Split('\n').Select(l => l.Split(' ')).Last(f => f.Length > 6 && f[4] == "/");
        Assert.Contains(root.Skip(6).TakeWhile(f => f != "-"), f => f.StartsWith("shared:", StringComparison.Ordinal));
        Assert.DoesNotContain(" - rootfs ", mountinfo, StringComparison.Ordinal);
        await vm.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }
}
