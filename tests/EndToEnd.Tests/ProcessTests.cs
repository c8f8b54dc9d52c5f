namespace ShimV2.EndToEnd.Tests;

/// <summary>A `sleep 1000` pod with a 64 MiB memory limit, shared by <see cref="ProcessTests"/>' memory update test.</summary>
public sealed class LimitedContainer : SharedContainer
{
    public const long Limit = 64L * 1024 * 1024;

    protected override string Name => "mem";

    protected override IEnumerable<string> Flags => ["--memory-limit", Limit.ToString(System.Globalization.CultureInfo.InvariantCulture)];
}

/// <summary>
/// Issue 3 scenarios that end a container or change its limits: kill --all, a memory limit raised by Update, an
/// OOM-killed hog, stdin of the init process.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class ProcessTests(ContainerdFixture fixture, LimitedContainer limited, ITestOutputHelper output) : IClassFixture<LimitedContainer>
{
    private const string Hog128MiB = "bs=128M";

    /// <summary>`ctr task kill --all -s SIGKILL`: the exec and the init both die (137), the exec's exit first.</summary>
    [E2EFact]
    public Task Kill_all_ends_every_process_execs_first() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("killall");
        await c.CtrOkAsync(Ctr.RunArgs(id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);
        await using var exec = c.StartCtr(Ctr.ExecArgs(id, "e1", "sleep", "1000"));
        await events.WaitForAsync(e => e.Topic == "/tasks/exec-started" && e.ProcessId == "e1", Ctr.EventTimeout, "/tasks/exec-started e1");

        await c.CtrOkAsync(["tasks", "kill", "--all", "-s", "SIGKILL", id]);
        var r = await exec.WaitAsync(Ctr.EventTimeout);
        Assert.True(r.ExitCode == 137, r.ToString());
        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ProcessId == id, Ctr.EventTimeout, $"/tasks/exit of {id}");
        await c.CtrOkAsync(["tasks", "delete", id]);
        await c.CtrOkAsync(["containers", "delete", id]);

        await events.AssertSequenceAsync(id,
            ["/tasks/create", "/tasks/start", "/tasks/exec-added e1", "/tasks/exec-started e1", "/tasks/exit e1 137", $"/tasks/exit {id} 137", "/tasks/delete 137"],
            Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(c, id);
    });

    /// <summary>A 128 MiB allocation fails under the 64 MiB limit (OOM kill, 137); after an Update to 256 MiB the same
    /// allocation succeeds. containerd 1.6's ctr has no `task update`: the test sends the shim the Update containerd's
    /// Tasks.Update would forward (see <see cref="ShimClient"/>).</summary>
    [E2EFact]
    public Task Update_raises_the_memory_limit_so_an_allocation_fits() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = await limited.GetAsync(s);
        await using var events = await s.EventsAsync();

        var before = await c.CtrAsync(Ctr.ExecArgs(id, "hog1", "dd", "if=/dev/zero", "of=/dev/null", Hog128MiB, "count=1"), TimeSpan.FromSeconds(120));
        Assert.True(before.ExitCode == 137, $"128 MiB under a 64 MiB limit should be OOM-killed: {before}");

        await ShimClient.UpdateAsync(c, id, """{"memory":{"limit":268435456}}""");
        s.Write("Update: memory limit 256 MiB");

        var after = await c.CtrAsync(Ctr.ExecArgs(id, "hog2", "dd", "if=/dev/zero", "of=/dev/null", Hog128MiB, "count=1"), TimeSpan.FromSeconds(120));
        Assert.True(after.ExitCode == 0, $"128 MiB under a 256 MiB limit should fit: {after}");
        await events.AssertSequenceAsync(id,
            ["/tasks/exec-added hog1", "/tasks/exec-started hog1", "/tasks/oom", "/tasks/exit hog1 137", "/tasks/exec-added hog2", "/tasks/exec-started hog2", "/tasks/exit hog2 0"],
            Ctr.EventTimeout);
    });

    /// <summary>An init that allocates 256 MiB under a 32 MiB limit is OOM-killed: exit 137, /tasks/oom before /tasks/exit.</summary>
    [E2EFact]
    public Task Memory_hog_is_oom_killed_with_the_oom_event_before_the_exit() => Scenario.RunAsync(fixture, output, async s =>
    {
        await using var events = await s.EventsAsync();
        var id = s.NewId("oom");

        var r = await s.Containerd.CtrAsync(
            Ctr.RunArgs(id, ["--rm", "--memory-limit", (32L * 1024 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture)],
                "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"),
            Ctr.BootTimeout);

        Assert.True(r.ExitCode == 137, r.ToString());
        await events.AssertSequenceAsync(id, ["/tasks/create", "/tasks/start", "/tasks/oom", $"/tasks/exit {id} 137", "/tasks/delete 137"], Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(s.Containerd, id);
    });

    /// <summary>1 MiB into the init process's stdin (`ctr run` forwards its stdin but, in 1.6, never closes it: the
    /// reader stops by itself after N bytes) comes out with the same sha256.</summary>
    [Trait("containerd", "all")]
    [E2EFact]
    public Task Init_stdin_is_byte_exact() => Scenario.RunAsync(fixture, output, async s =>
    {
        await using var events = await s.EventsAsync();
        var id = s.NewId("stdin");
        const long bytes = 1024 * 1024;
        using var sent = new HashingStream();

        var r = await s.Containerd.CtrAsync(Ctr.RunArgs(id, ["--rm"], "sh", "-c", $"head -c {bytes} | sha256sum"), Ctr.BootTimeout,
            new ProcessOptions { Stdin = TestData.Random(bytes, 7, sent) });

        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(bytes, sent.Count);
        Assert.Equal(sent.HexDigest(), r.Stdout.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault());
        await events.AssertSequenceAsync(id, ["/tasks/create", "/tasks/start", $"/tasks/exit {id} 0", "/tasks/delete 0"], Ctr.EventTimeout);
        await HostState.AssertNothingLeftAsync(s.Containerd, id);
    });

    /// <summary>`ctr run --seccomp --seccomp-profile`: the profile's rule refuses mkdir with its errno, everything else
    /// runs, and the kernel reports the process as filtered (the same output as with runc).</summary>
    [E2EFact]
    public Task Seccomp_profile_refuses_the_calls_it_lists() => Scenario.RunAsync(fixture, output, async s =>
    {
        var id = s.NewId("seccomp");
        var profile = Path.Combine(Path.GetTempPath(), $"csharp-e2e-{id}-seccomp.json");
        await File.WriteAllTextAsync(profile, """
            {"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
             "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}
            """);
        try
        {
            var r = await s.Containerd.CtrAsync(
                Ctr.RunArgs(id, ["--rm", "--seccomp", "--seccomp-profile", profile], "sh", "-c", "grep Seccomp: /proc/self/status; mkdir /made-here; echo mkdir=$?"),
                Ctr.BootTimeout);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(["Seccomp:\t2", "mkdir=1"], r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains("Permission denied", r.Stderr, StringComparison.Ordinal);
            await HostState.AssertNothingLeftAsync(s.Containerd, id);
        }
        finally
        {
            File.Delete(profile);
        }
    });
}
