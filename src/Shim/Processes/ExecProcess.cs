using Containerd.Events;
using Google.Protobuf;
using ShimV2.Shim.Events;
using ShimV2.Shim.Stdio;

namespace ShimV2.Shim.Processes;

/// <summary>An exec: added by Exec (its OCI Process JSON kept), run in the guest by Start, removed by Delete.</summary>
public sealed class ExecProcess(Container container, string execId, StdioConfig stdio, uint pid, byte[] spec, ProcessEnvironment environment)
    : ShimProcess(container, execId, stdio, pid, environment)
{
    /// <summary>The OCI Process JSON, kept until Start.</summary>
    public byte[] Spec { get; } = spec;

    public Task<Containerd.Task.V2.DeleteResponse> DeleteAsync(CancellationToken cancellationToken) => LockedAsync(
        async () =>
        {
            Check(s => s.Delete());
            if (Io is not null)
            {
                await Io.DisposeAsync();
            }

            Transition(s => s.Delete());
            SettleStart();
            Container.Execs.TryRemove(ExecId, out _);
            return new Containerd.Task.V2.DeleteResponse { Pid = Pid, ExitStatus = ExitStatus, ExitedAt = Now(ExitedAt) };
        },
        cancellationToken);

    protected override async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        if (Container.Init.State is ProcessStateKind.Stopped or ProcessStateKind.Deleted)
        {
            throw Errors.FailedPrecondition($"cannot start {Name}: its container has stopped");
        }

        var sandbox = Environment.Sandbox;
        var exec = await AgentCalls.RunAsync($"start {Name}", () => sandbox.Agent.ExecProcessAsync(
            new Agent.Protocol.V1.ExecProcessRequest
            {
                ContainerId = ContainerId,
                ExecId = ExecId,
                ProcessJson = ByteString.CopyFrom(Spec),
                Terminal = Stdio.Terminal,
                Stdin = Stdio.HasStdin,
                Stdout = Stdio.HasStdout,
                Stderr = Stdio.HasStderr,
            },
            null,
            cancellationToken));
        GuestPid = exec.Pid;

        // The copy runs before the exec counts as started: a running exec always has output an exit can wait for.
        var io = new StdioForwarder(Stdio, new AgentStdio(sandbox.Agent, ContainerId, ExecId), Environment.Logger, $"{ContainerId}/{ExecId}");
        io.Start();
        var started = false;
        try
        {
            lock (Container.ExitGate)
            {
                // The init's exit is already out: this exec died with its container, and must not start after it.
                if (Container.Init.State is ProcessStateKind.Stopped or ProcessStateKind.Deleted)
                {
                    throw Errors.FailedPrecondition($"cannot start {Name}: its container has stopped");
                }

                Io = io;
                Transition(s => s.Start());
                Environment.Events.Publish(EventTopics.TaskExecStarted, new TaskExecStarted { ContainerId = ContainerId, ExecId = ExecId, Pid = Pid });
                started = true;
            }
        }
        finally
        {
            if (!started)
            {
                await io.DisposeAsync();
            }
        }

        _ = WatchExitAsync();
    }
}
