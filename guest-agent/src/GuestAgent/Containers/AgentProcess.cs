using ShimV2.GuestAgent.Cgroups;
using ShimV2.GuestAgent.Helper;
using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.Stdio;

namespace ShimV2.GuestAgent.Containers;

/// <summary>How a process ended, as WaitProcess reports it.</summary>
internal sealed record ProcessResult(ProcessExit Exit, bool OomKilled)
{
    public uint ExitStatus => Exit.ExitStatus;

    public long ExitedAtUnixNano => (Exit.ExitedAt.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100;
}

/// <summary>A container's init or exec process: its helper session (start gate, exit) and its stdio.</summary>
internal sealed class AgentProcess : IDisposable
{
    private readonly Cgroup? _cgroup;
    private readonly ulong _oomBaseline;

    public AgentProcess(string containerId, string execId, HelperSession session, ProcessStdio stdio, Cgroup? cgroup, IReadOnlyList<string> args)
    {
        ContainerId = containerId;
        ExecId = execId;
        Session = session;
        Stdio = stdio;
        Args = args;
        _cgroup = cgroup;
        _oomBaseline = cgroup?.OomKills() ?? 0;
        Completion = CompleteAsync();
    }

    public string ContainerId { get; }

    /// <summary>Empty for the container's init.</summary>
    public string ExecId { get; }

    public HelperSession Session { get; }

    public ProcessStdio Stdio { get; }

    public IReadOnlyList<string> Args { get; }

    public int Pid => Session.Pid;

    public bool HasExited => Session.Exit.IsCompleted;

    /// <summary>Completes once the process exited and its output is drained into the agent's buffers.</summary>
    public Task<ProcessResult> Completion { get; }

    public string Name => ExecId.Length == 0 ? ContainerId : $"{ContainerId}/{ExecId}";

    /// <summary>Sends a signal to this process alone.</summary>
    /// <exception cref="AgentException">NotFound when it has already exited.</exception>
    public void Signal(int signal)
    {
        if (HasExited)
        {
            throw AgentException.NotFound($"process {Name} already finished");
        }

        if (Libc.kill(Pid, signal) != 0)
        {
            var errno = Libc.Errno;
            throw errno == Libc.ESRCH
                ? AgentException.NotFound($"process {Name} already finished")
                : new NativeIOException($"kill {Pid}", errno);
        }
    }

    public void Dispose()
    {
        Session.Dispose();
        Stdio.Dispose();
    }

    private async Task<ProcessResult> CompleteAsync()
    {
        var exit = await Session.Exit.ConfigureAwait(false);
        Stdio.ProcessExited();
        var oom = exit.Signal == Libc.SIGKILL && _cgroup != null && _cgroup.OomKills() > _oomBaseline;
        await Stdio.Drained.ConfigureAwait(false);
        return new ProcessResult(exit, oom);
    }
}
