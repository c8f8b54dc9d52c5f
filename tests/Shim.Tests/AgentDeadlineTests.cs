using System.Diagnostics;
using Containerd.Events;
using Containerd.Task.V2;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol;
using ShimV2.Shim.Events;
using ShimV2.Shim.Tasks;
using ShimV2.Ttrpc;
using Status = Containerd.V1.Types.Status;

namespace ShimV2.Shim.Tests;

/// <summary>A guest that stops answering: agent calls end at the deadline, SIGKILL still ends the pod.</summary>
public sealed class AgentDeadlineTests : IAsyncDisposable
{
    // Long enough that a healthy call on a loaded 2-core CI machine (first calls JIT the fakes) never meets it.
    private static readonly TimeSpan Deadline = TimeSpan.FromMilliseconds(1500);
    private readonly TaskServiceHarness _h = new();

    public AgentDeadlineTests() => _h.Launcher.AgentTimeout = Deadline;

    public ValueTask DisposeAsync() => _h.DisposeAsync();

    private TaskService Service => _h.Service;

    [Fact]
    public async Task An_exec_into_a_hung_guest_fails_at_the_deadline_saying_the_guest_stopped_answering()
    {
        await StartedAsync("c1");
        await Service.ExecAsync(Exec("c1", "e1"));
        await _h.Events.ExpectAsync<TaskExecAdded>(EventTopics.TaskExecAdded);
        _h.Agent.Hung = true;

        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ShimException>(() => Service.StartAsync(new StartRequest { Id = "c1", ExecId = "e1" }, CancellationToken.None));

        Assert.Equal(ErrorKind.DeadlineExceeded, e.Kind);
        Assert.Equal("start exec e1 in container c1: guest agent did not answer ExecProcess within 1.5 s: the VM may be hung", e.Message);
        // The deadline is a wall-clock instant (gRPC's CallOptions.Deadline) turned back into a timeout: against this
        // monotonic stopwatch it may end a few milliseconds early (1.4984 s seen for 1.5 s).
        Assert.InRange(clock.Elapsed, Deadline - TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task SIGKILL_of_a_container_in_a_hung_guest_stops_the_VM_and_the_task_exits_and_deletes()
    {
        await StartedAsync("c1");
        _h.Agent.Hung = true;

        var e = await Assert.ThrowsAsync<ShimException>(() => Service.KillAsync(new KillRequest { Id = "c1", Signal = 15 }, CancellationToken.None));
        Assert.Equal(ErrorKind.DeadlineExceeded, e.Kind);
        Assert.StartsWith("signal 15 to container c1: guest agent did not answer SignalProcess", e.Message, StringComparison.Ordinal);
        Assert.Null(_h.Launcher.Launched[0].TerminatedBecause);

        await Service.KillAsync(new KillRequest { Id = "c1", Signal = 9 }, CancellationToken.None);
        Assert.Contains("SIGKILL of c1: guest agent did not answer SignalProcess", _h.Launcher.Launched[0].TerminatedBecause, StringComparison.Ordinal);
        var exit = await _h.Events.ExpectAsync<TaskExit>(EventTopics.TaskExit);
        Assert.Equal(("c1", 255u), (exit.ContainerId, exit.ExitStatus));
        Assert.Equal(Status.Stopped, (await Service.StateAsync(new StateRequest { Id = "c1" })).Status);

        await Service.DeleteAsync(new DeleteRequest { Id = "c1" }, CancellationToken.None);
        await _h.Events.ExpectAsync<TaskDelete>(EventTopics.TaskDelete);
        Assert.True(_h.Launcher.Launched[0].Stopped);
    }

    [Fact]
    public async Task Waiting_for_an_exit_is_not_bounded_by_the_agent_deadline()
    {
        await StartedAsync("c1");
        var wait = Service.WaitAsync(new WaitRequest { Id = "c1" }, CancellationToken.None);

        // Absence of a deadline can only be shown by outliving it: three deadlines, then the real exit.
        await Task.Delay(Deadline * 3);
        Assert.False(wait.IsCompleted, "WaitProcess must not end at the agent deadline");
        _h.Agent.Process("c1").End(7);

        Assert.Equal(7u, (await wait.WaitAsync(TimeSpan.FromSeconds(20))).ExitStatus);
    }

    [Fact]
    public async Task A_caller_timeout_wins_over_the_default_and_a_server_error_is_not_rewritten()
    {
        await StartedAsync("c1");
        var agent = _h.Launcher.Launched[0].Agent;
        Assert.Equal(Deadline, agent.CallTimeout);

        var notFound = await Assert.ThrowsAsync<TtrpcException>(() => agent.SignalProcessAsync(
            new Agent.Protocol.V1.SignalProcessRequest { ContainerId = "nope", Signal = 9 }, null, CancellationToken.None));
        Assert.IsNotType<AgentDeadlineException>(notFound);

        _h.Agent.Hung = true;
        var own = await Assert.ThrowsAsync<TtrpcException>(() => agent.SignalProcessAsync(
            new Agent.Protocol.V1.SignalProcessRequest { ContainerId = "c1", Signal = 9 }, new TtrpcCallOptions { Timeout = TimeSpan.FromMilliseconds(50) }, CancellationToken.None));
        Assert.IsNotType<AgentDeadlineException>(own);
        Assert.Equal(TtrpcStatusCode.DeadlineExceeded, own.Code);
    }

    private static Containerd.Task.V2.ExecProcessRequest Exec(string id, string execId) => new()
    {
        Id = id,
        ExecId = execId,
        Spec = new Any { TypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process", Value = ByteString.CopyFromUtf8("""{"args":["true"]}""") },
    };

    private async Task StartedAsync(string id)
    {
        await _h.CreateAsync(id);
        await _h.Events.ExpectAsync<TaskCreate>(EventTopics.TaskCreate);
        await Service.StartAsync(new StartRequest { Id = id }, CancellationToken.None);
        await _h.Events.ExpectAsync<TaskStart>(EventTopics.TaskStart);
    }
}
