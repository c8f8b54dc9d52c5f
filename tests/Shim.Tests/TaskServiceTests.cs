using Containerd.Events;
using Containerd.Task.V2;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Shim.Events;
using ShimV2.Shim.Tasks;
using ShimV2.Ttrpc;
using Status = Containerd.V1.Types.Status;

namespace ShimV2.Shim.Tests;

public sealed class TaskServiceTests : IAsyncDisposable
{
    private readonly TaskServiceHarness _h = new();

    public ValueTask DisposeAsync() => _h.DisposeAsync();

    private TaskService Service => _h.Service;

    [Fact]
    public async Task A_task_runs_create_start_exit_delete_with_its_output_before_its_exit()
    {
        var created = await _h.CreateAsync("c1");
        Assert.Equal((uint)TaskServiceHarness.VmPid, created.Pid);
        Assert.Equal((uint)TaskServiceHarness.VmPid, (await _h.Events.ExpectAsync<TaskCreate>(EventTopics.TaskCreate)).Pid);
        Assert.Equal(Status.Created, (await Service.StateAsync(new StateRequest { Id = "c1" })).Status);

        await Service.StartAsync(new StartRequest { Id = "c1" }, CancellationToken.None);
        await _h.Events.ExpectAsync<TaskStart>(EventTopics.TaskStart);
        Assert.Equal(Status.Running, (await Service.StateAsync(new StateRequest { Id = "c1" })).Status);

        var wait = Service.WaitAsync(new WaitRequest { Id = "c1" }, CancellationToken.None);
        _h.Agent.Process("c1").End(3, "hello\n");
        var exit = await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit);
        Assert.Equal(("c1", "c1", 3u), (exit.ContainerId, exit.Id, exit.ExitStatus));
        Assert.Equal("hello\n", await File.ReadAllTextAsync(Path.Combine(_h.Launcher.Launched[0].Paths.Root, "..", "..", "bundles", "c1", "stdout")));
        Assert.Equal(3u, (await wait).ExitStatus);
        var state = await Service.StateAsync(new StateRequest { Id = "c1" });
        Assert.Equal((Status.Stopped, 3u), (state.Status, state.ExitStatus));

        var deleted = await Service.DeleteAsync(new DeleteRequest { Id = "c1" }, CancellationToken.None);
        Assert.Equal(3u, deleted.ExitStatus);
        Assert.Equal(3u, (await _h.Events.ExpectAsync<TaskDelete>(EventTopics.TaskDelete)).ExitStatus);
        Assert.True(_h.Launcher.Launched[0].Stopped, "the VM must stop with its last container");
        Assert.Equal(ErrorKind.NotFound, (await Assert.ThrowsAsync<ShimException>(() => Service.StateAsync(new StateRequest { Id = "c1" }))).Kind);
    }

    [Fact]
    public async Task An_init_exit_is_published_only_after_its_execs_exits()
    {
        await StartedAsync("c1");
        await Service.ExecAsync(new Containerd.Task.V2.ExecProcessRequest
        {
            Id = "c1",
            ExecId = "e1",
            Spec = new Any { TypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process", Value = ByteString.CopyFromUtf8("""{"args":["true"]}""") },
        });
        Assert.Equal("e1", (await _h.Events.ExpectAsync<TaskExecAdded>(EventTopics.TaskExecAdded)).ExecId);
        await Service.StartAsync(new StartRequest { Id = "c1", ExecId = "e1" }, CancellationToken.None);
        Assert.Equal("e1", (await _h.Events.ExpectAsync<TaskExecStarted>(EventTopics.TaskExecStarted)).ExecId);
        Assert.Contains("exec c1/e1 {\"args\":[\"true\"]}", _h.Agent.Calls);

        // The guest reports the init's exit first; containerd must still see the exec's exit first.
        _h.Agent.Process("c1").End(0);
        _h.Agent.Process("c1", "e1").End(5);
        var first = await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit);
        var second = await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit);
        Assert.Equal(("e1", 5u), (first.Id, first.ExitStatus));
        Assert.Equal(("c1", 0u), (second.Id, second.ExitStatus));

        var execState = await Service.StateAsync(new StateRequest { Id = "c1", ExecId = "e1" });
        Assert.Equal((Status.Stopped, 5u, "e1"), (execState.Status, execState.ExitStatus, execState.ExecId));
        await Service.DeleteAsync(new DeleteRequest { Id = "c1", ExecId = "e1" }, CancellationToken.None);
        Assert.Equal(ErrorKind.NotFound,
            (await Assert.ThrowsAsync<ShimException>(() => Service.StateAsync(new StateRequest { Id = "c1", ExecId = "e1" }))).Kind);
    }

    [Fact]
    public async Task Kill_reaches_the_agent_and_a_finished_process_is_NotFound()
    {
        await StartedAsync("c1");
        await Service.KillAsync(new KillRequest { Id = "c1", Signal = 15 }, CancellationToken.None);
        Assert.Equal(143u, (await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit)).ExitStatus);
        var e = await Assert.ThrowsAsync<ShimException>(() => Service.KillAsync(new KillRequest { Id = "c1", Signal = 9 }, CancellationToken.None));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
    }

    [Fact]
    public async Task Kill_that_meets_the_pods_vm_going_away_is_NotFound_as_for_a_finished_process()
    {
        await StartedAsync("c1");
        await _h.Launcher.Launched[0].StopAsync(CancellationToken.None);

        var e = await Assert.ThrowsAsync<ShimException>(() => Service.KillAsync(new KillRequest { Id = "c1", Signal = 9 }, CancellationToken.None));
        Assert.Equal(ErrorKind.NotFound, e.Kind);

        // Which comes first is a race that both ends of containerd's Kill handle alike: the Kill meets the VM stopping,
        // or the VM's exit already ended the process.
        Assert.True(
            e.Message.StartsWith("signal 9 to container c1: the pod's VM is stopping (", StringComparison.Ordinal)
                || e.Message == "process already finished",
            $"unexpected message: {e.Message}");
    }

    [Fact]
    public async Task Pause_and_resume_change_state_and_publish_events()
    {
        await StartedAsync("c1");
        await Service.PauseAsync(new PauseRequest { Id = "c1" }, CancellationToken.None);
        await _h.Events.ExpectAsync<TaskPaused>(EventTopics.TaskPaused);
        Assert.Equal(Status.Paused, (await Service.StateAsync(new StateRequest { Id = "c1" })).Status);
        var again = await Assert.ThrowsAsync<ShimException>(() => Service.PauseAsync(new PauseRequest { Id = "c1" }, CancellationToken.None));
        Assert.Equal("cannot pause task in paused state", again.Message);

        await Service.ResumeAsync(new ResumeRequest { Id = "c1" }, CancellationToken.None);
        await _h.Events.ExpectAsync<TaskResumed>(EventTopics.TaskResumed);
        Assert.Equal(Status.Running, (await Service.StateAsync(new StateRequest { Id = "c1" })).Status);
        Assert.Equal(["pause c1", "resume c1"], _h.Agent.Calls.Where(c => c.StartsWith('p') || c.StartsWith('r')).ToArray());
    }

    [Fact]
    public async Task Pause_of_a_created_task_is_refused_like_runc()
    {
        await _h.CreateAsync("c1");
        var e = await Assert.ThrowsAsync<ShimException>(() => Service.PauseAsync(new PauseRequest { Id = "c1" }, CancellationToken.None));
        Assert.Equal((ErrorKind.FailedPrecondition, "cannot pause task in created state"), (e.Kind, e.Message));
    }

    [Fact]
    public async Task A_hostNetwork_pod_sandbox_is_refused_before_any_VM_boots()
    {
        const string HostNetworkSandbox = """
            {"process":{"args":["/pause"]},"annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"p1"},
             "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"mount"}]}}
            """;
        var e = await Assert.ThrowsAsync<ShimException>(() => _h.CreateAsync("p1", HostNetworkSandbox));
        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
        Assert.StartsWith("hostNetwork pods are not supported by runtime io.containerd.csharp.v1", e.Message, StringComparison.Ordinal);
        Assert.Empty(_h.Launcher.Launched);
        Assert.Equal(0, Service.ContainerCount);
    }

    [Fact]
    public async Task Checkpoint_is_Unimplemented()
    {
        await StartedAsync("c1");
        var e = await Assert.ThrowsAsync<ShimException>(() => Service.CheckpointAsync(new CheckpointTaskRequest { Id = "c1" }));
        Assert.Equal(ErrorKind.Unimplemented, e.Kind);
    }

    [Fact]
    public async Task Connect_answers_while_a_create_is_still_booting_the_VM()
    {
        _h.Launcher.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var create = _h.CreateAsync("c1");
        var connect = await Service.ConnectAsync(new ConnectRequest { Id = "c1" });
        Assert.Equal((uint)Environment.ProcessId, connect.ShimPid);
        Assert.False(create.IsCompleted);
        _h.Launcher.Gate.SetResult();
        await create;
        Assert.Equal((uint)TaskServiceHarness.VmPid, (await Service.ConnectAsync(new ConnectRequest { Id = "c1" })).TaskPid);
    }

    [Fact]
    public async Task Containers_of_one_pod_share_one_VM_and_another_pod_is_refused()
    {
        const string sandboxAnnotation = """{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}""";
        await _h.CreateAsync("pod");
        await _h.CreateAsync("app", sandboxAnnotation);
        Assert.Single(_h.Launcher.Launched);

        var e = await Assert.ThrowsAsync<ShimException>(() => _h.CreateAsync("other", """{"annotations":{"io.kubernetes.cri.sandbox-id":"pod2"}}"""));
        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);

        await Service.DeleteAsync(new DeleteRequest { Id = "app" }, CancellationToken.None);
        Assert.False(_h.Launcher.Launched[0].Stopped, "the VM stays while its sandbox container lives");
        await Service.DeleteAsync(new DeleteRequest { Id = "pod" }, CancellationToken.None);
        Assert.True(_h.Launcher.Launched[0].Stopped);
    }

    [Fact]
    public async Task A_second_create_of_the_same_id_is_AlreadyExists()
    {
        await _h.CreateAsync("c1");
        var e = await Assert.ThrowsAsync<ShimException>(() => _h.CreateAsync("c1"));
        Assert.Equal(ErrorKind.AlreadyExists, e.Kind);
    }

    [Fact]
    public async Task An_OOM_kill_publishes_TaskOOM_before_TaskExit()
    {
        await StartedAsync("c1");
        _h.Agent.Process("c1").End(137, oom: true);
        await _h.Events.ExpectAsync<TaskOOM>(EventTopics.TaskOom);
        Assert.Equal(137u, (await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit)).ExitStatus);
    }

    /// <summary>One OOM kill reaches the shim twice (the agent's OOM queue and the exit's flag), in either order:
    /// containerd gets one TaskOOM per kill, before the exit, and an OOM with no exit (a child killed) still gets one.</summary>
    [Fact]
    public async Task An_OOM_kill_seen_by_the_queue_and_the_exit_is_one_TaskOOM()
    {
        await StartedAsync("c1");

        await StartExecAsync("c1", "e1");
        _h.Agent.Process("c1", "e1").End(137, oom: true);
        await _h.Events.ExpectAsync<TaskOOM>(EventTopics.TaskOom);
        Assert.Equal("e1", (await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit)).Id);
        _h.Agent.OomEvents.Writer.TryWrite("c1"); // the same kill, queued late

        await StartExecAsync("c1", "e2");
        _h.Agent.Oom("c1", "e2"); // a second kill, queued before its exit
        await _h.Events.ExpectAsync<TaskOOM>(EventTopics.TaskOom);
        Assert.Equal("e2", (await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit)).Id);

        _h.Agent.OomEvents.Writer.TryWrite("c1"); // a third kill that ended no watched process
        await _h.Events.ExpectAsync<TaskOOM>(EventTopics.TaskOom);
        Assert.Equal(3, _h.Events.Seen.Count(e => e.Topic == EventTopics.TaskOom));
    }

    private async Task StartExecAsync(string id, string execId)
    {
        await Service.ExecAsync(new Containerd.Task.V2.ExecProcessRequest
        {
            Id = id,
            ExecId = execId,
            Spec = new Any { TypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process", Value = ByteString.CopyFromUtf8("""{"args":["true"]}""") },
        });
        Assert.Equal(execId, (await _h.Events.ExpectAsync<TaskExecAdded>(EventTopics.TaskExecAdded)).ExecId);
        await Service.StartAsync(new StartRequest { Id = id, ExecId = execId }, CancellationToken.None);
        Assert.Equal(execId, (await _h.Events.ExpectAsync<TaskExecStarted>(EventTopics.TaskExecStarted)).ExecId);
    }

    [Fact]
    public async Task Stats_are_cgroup_metrics_of_the_hosts_kind_and_pids_are_guest_pids()
    {
        await StartedAsync("c1");
        var stats = await Service.StatsAsync(new StatsRequest { Id = "c1" }, CancellationToken.None);
        var v2 = File.Exists("/sys/fs/cgroup/cgroup.controllers");
        Assert.Equal(v2 ? "io.containerd.cgroups.v2.Metrics" : "io.containerd.cgroups.v1.Metrics", stats.Stats.TypeUrl);
        if (v2)
        {
            var metrics = Containerd.Cgroups.V2.Metrics.Parser.ParseFrom(stats.Stats.Value);
            Assert.Equal((1500ul, 4096ul, 2ul), (metrics.Cpu.UsageUsec, metrics.Memory.Usage, metrics.Pids.Current));
        }

        var pids = await Service.PidsAsync(new PidsRequest { Id = "c1" }, CancellationToken.None);
        Assert.Equal(_h.Agent.Process("c1").Pid, Assert.Single(pids.Processes).Pid);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a/b")]
    [InlineData("..")]
    [InlineData("has space")]
    public async Task Invalid_ids_are_refused(string id)
    {
        var e = await Assert.ThrowsAsync<ShimException>(() => Service.CreateAsync(new CreateTaskRequest { Id = id, Bundle = "/nonexistent" }, CancellationToken.None));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
    }

    [Fact]
    public async Task Shutdown_with_containers_left_is_ignored_and_honoured_when_empty()
    {
        await _h.CreateAsync("c1");
        await Service.ShutdownAsync(new ShutdownRequest { Id = "c1" });
        Assert.False(Service.ShutdownRequested.IsCompleted);
        await Service.DeleteAsync(new DeleteRequest { Id = "c1" }, CancellationToken.None);
        await Service.ShutdownAsync(new ShutdownRequest { Id = "c1" });
        Assert.True(Service.ShutdownRequested.IsCompleted);
    }

    /// <summary>A restarted containerd reconnects to a shim whose Create it cancelled and keeps it, task-less, for
    /// ever: the shim exits by itself instead. A Create that fails while its caller waits leaves that to containerd.</summary>
    [Fact]
    public async Task A_create_its_caller_cancelled_shuts_the_empty_shim_down_and_a_plain_failure_does_not()
    {
        // A guest that does not answer: the Create fails at the agent deadline, its VM stopped, containerd still there.
        _h.Launcher.AgentTimeout = TimeSpan.FromMilliseconds(300);
        _h.Agent.Hung = true;
        var failed = await Assert.ThrowsAsync<ShimException>(() => _h.CreateAsync("c0"));
        Assert.Equal(ErrorKind.DeadlineExceeded, failed.Kind);
        Assert.Equal(0, Service.ContainerCount);
        Assert.False(Service.ShutdownRequested.IsCompleted);
        _h.Agent.Hung = false;

        _h.Launcher.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var caller = new CancellationTokenSource();
        var (bundle, stdout) = _h.Bundle("c1");
        var create = Service.CreateAsync(new CreateTaskRequest { Id = "c1", Bundle = bundle, Stdout = stdout }, caller.Token);
        await caller.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => create);
        Assert.Equal(0, Service.ContainerCount);
        Assert.True(Service.ShutdownRequested.IsCompleted);
    }

    private async Task StartedAsync(string id)
    {
        await _h.CreateAsync(id);
        await _h.Events.ExpectAsync<TaskCreate>(EventTopics.TaskCreate);
        await Service.StartAsync(new StartRequest { Id = id }, CancellationToken.None);
        await _h.Events.ExpectAsync<TaskStart>(EventTopics.TaskStart);
    }
}
