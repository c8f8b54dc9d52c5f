using Containerd.Events;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Shim.Events;
using ShimV2.Shim.Stdio;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Processes;

/// <summary>A container's init: created by CreateContainer, started, paused, resumed, deleted with its container.</summary>
public sealed partial class InitProcess : ShimProcess
{
    /// <summary>The exit status containerd is told for a process the shim could not see end (SIGKILL's).</summary>
    public const uint LostStatus = 128 + 9;

    /// <summary>How long Delete, which already waited for the exit, still waits for unreported execs' output.</summary>
    private static readonly TimeSpan DeleteDrainTimeout = TimeSpan.FromSeconds(2);

    private InitProcess(Container container, StdioConfig stdio, uint pid, uint guestPid, ProcessEnvironment environment)
        : base(container, string.Empty, stdio, pid, environment)
    {
        GuestPid = guestPid;
    }

    /// <summary>Registers the created init with its container, starts its stdio and its exit watcher.</summary>
    public static InitProcess Attach(Container container, StdioConfig stdio, uint pid, uint guestPid, ProcessEnvironment environment)
    {
        var init = new InitProcess(container, stdio, pid, guestPid, environment);
        container.Init = init;
        init.Io = new StdioForwarder(stdio, new AgentStdio(environment.Sandbox.Agent, container.Id, string.Empty), environment.Logger, container.Id);
        init.Io.Start();
        _ = init.WatchExitAsync();
        return init;
    }

    public Task PauseAsync(CancellationToken cancellationToken) => LockedAsync(
        async () =>
        {
            Check(s => s.Pause());
            await AgentCalls.RunAsync($"pause {Name}", () => Environment.Sandbox.Agent.PauseContainerAsync(
                new ContainerRequest { ContainerId = ContainerId }, null, cancellationToken));
            Transition(s => s.Pause());
            Environment.Events.Publish(EventTopics.TaskPaused, new TaskPaused { ContainerId = ContainerId });
            return true;
        },
        cancellationToken);

    public Task ResumeAsync(CancellationToken cancellationToken) => LockedAsync(
        async () =>
        {
            Check(s => s.Resume());
            await AgentCalls.RunAsync($"resume {Name}", () => Environment.Sandbox.Agent.ResumeContainerAsync(
                new ContainerRequest { ContainerId = ContainerId }, null, cancellationToken));
            Transition(s => s.Resume());
            Environment.Events.Publish(EventTopics.TaskResumed, new TaskResumed { ContainerId = ContainerId });
            return true;
        },
        cancellationToken);

    /// <summary>Refuses a resource update of a stopped container (the caller grows the VM, then calls Update).</summary>
    public void CheckUpdate() => Check(s => s.CheckUpdate());

    public Task UpdateAsync(ReadOnlyMemory<byte> resourcesJson, CancellationToken cancellationToken) => LockedAsync(
        async () =>
        {
            Check(s => s.CheckUpdate());
            await AgentCalls.RunAsync($"update {Name}", () => Environment.Sandbox.Agent.UpdateContainerAsync(
                new UpdateContainerRequest { ContainerId = ContainerId, ResourcesJson = Google.Protobuf.ByteString.CopyFrom(resourcesJson.Span) },
                null,
                cancellationToken));
            return true;
        },
        cancellationToken);

    /// <summary>
    /// Removes the container in the guest and publishes TaskDelete. The exit comes first, exactly once: the watcher's,
    /// or, when the guest does not report it in time, one recorded here (and the watcher's later one is dropped).
    /// </summary>
    public Task<Containerd.Task.V2.DeleteResponse> DeleteAsync(CancellationToken cancellationToken) => LockedAsync(
        async () =>
        {
            Check(s => s.Delete());
            if (State == ProcessStateKind.Created)
            {
                SettleStart();
            }

            try
            {
                // Removing a never-started container kills its init; its exit is recorded by the watcher.
                await Environment.Sandbox.Agent.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = ContainerId }, null, cancellationToken);
            }
            catch (TtrpcException e) when (e.Code is TtrpcStatusCode.NotFound or TtrpcStatusCode.Unavailable or TtrpcStatusCode.DeadlineExceeded)
            {
                LogAgentRemoveFailed(Environment.Logger, ContainerId, e.Message);
            }
            catch (TtrpcException e)
            {
                throw Errors.Agent($"delete {Name}", e);
            }

            await Exited.WaitAsync(DrainTimeout, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            cancellationToken.ThrowIfCancellationRequested();
            // Execs the guest has not reported (one started as the init ended) went with the container: their exits
            // go out now, or they would follow the delete. TryRecordExit keeps an exit already recorded.
            await RecordExitWithExecsAsync(LostStatus, DateTimeOffset.UtcNow, DeleteDrainTimeout);

            if (Io is not null)
            {
                await Io.DisposeAsync();
            }

            Transition(s => s.Delete());
            Environment.Events.Publish(EventTopics.TaskDelete, new TaskDelete
            {
                ContainerId = ContainerId,
                Pid = Pid,
                ExitStatus = ExitStatus,
                ExitedAt = Now(ExitedAt),
            });
            return new Containerd.Task.V2.DeleteResponse { Pid = Pid, ExitStatus = ExitStatus, ExitedAt = Now(ExitedAt) };
        },
        cancellationToken);

    protected override async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        await AgentCalls.RunAsync($"start {Name}", () => Environment.Sandbox.Agent.StartContainerAsync(
            new StartContainerRequest { ContainerId = ContainerId }, null, cancellationToken));
        Transition(s => s.Start());
        Environment.Events.Publish(EventTopics.TaskStart, new TaskStart { ContainerId = ContainerId, Pid = Pid });
    }

    /// <summary>An init's exit is published only after its execs' exits: wait for them (bounded), then record the
    /// exits of those the guest did not report, so none can follow the init's.</summary>
    protected override async Task BeforeExitAsync()
    {
        var started = Container.Execs.Values.Where(e => e.State != ProcessStateKind.Created).Select(e => e.Exited);
        await Task.WhenAll(started).WaitAsync(DrainTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    protected override Task RecordWatchedExitAsync(uint status, DateTimeOffset exitedAt) =>
        RecordExitWithExecsAsync(status, exitedAt, DrainTimeout);

    /// <summary>
    /// Records the exits of the execs the guest did not report (they went with the container), then the init's, each
    /// only after the exec's output was forwarded (bounded: output a hung guest never ends does not hold the exit
    /// forever). An exec cannot start once the init's exit is recorded (both under the exit gate), so none is missed.
    /// </summary>
    private async Task RecordExitWithExecsAsync(uint status, DateTimeOffset exitedAt, TimeSpan drainLimit)
    {
        var deadline = DateTimeOffset.UtcNow + drainLimit;
        while (true)
        {
            Task pending;
            lock (Container.ExitGate)
            {
                var undrained = RunningExecs().Select(e => e.OutputForwarded).Where(t => !t.IsCompleted).ToList();
                var left = deadline - DateTimeOffset.UtcNow;
                if (undrained.Count == 0 || left <= TimeSpan.Zero)
                {
                    foreach (var exec in RunningExecs())
                    {
                        exec.TryRecordExit(LostStatus, DateTimeOffset.UtcNow);
                    }

                    TryRecordExit(status, exitedAt);
                    return;
                }

                pending = Task.WhenAll(undrained).WaitAsync(left);
            }

            await pending.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private IEnumerable<ExecProcess> RunningExecs() =>
        Container.Execs.Values.Where(e => e.State is ProcessStateKind.Running or ProcessStateKind.Paused);

    [LoggerMessage(Level = LogLevel.Warning, Message = "agent could not remove container {Id}: {Reason}")]
    private static partial void LogAgentRemoveFailed(ILogger logger, string id, string reason);
}
