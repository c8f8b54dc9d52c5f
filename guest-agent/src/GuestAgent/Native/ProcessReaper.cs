namespace ShimV2.GuestAgent.Native;

/// <summary>How a child ended, as waitpid reported it.</summary>
internal sealed record ProcessExit(int Pid, int RawStatus, DateTimeOffset ExitedAt)
{
    /// <summary>The signal that ended the process, or 0 when it exited.</summary>
    public int Signal => (RawStatus & 0x7f) is var sig and > 0 and < 0x7f ? sig : 0;

    /// <summary>The exit code when it exited, else 0.</summary>
    public int Code => (RawStatus & 0x7f) == 0 ? (RawStatus >> 8) & 0xff : 0;

    /// <summary>containerd's convention: the exit code, or 128 + signal.</summary>
    public uint ExitStatus => Signal != 0 ? (uint)(128 + Signal) : (uint)Code;
}

/// <summary>
/// The process's only reaper: one thread blocked in waitpid(-1) records every child exit by pid, and completes
/// the waiter registered for it. Exits nobody registered yet are kept (bounded), so a process that dies before
/// its pid is even known to the agent is never lost. Nothing else in the process may wait for children:
/// System.Diagnostics.Process is never used.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The one reaper lives as long as the process.")]
internal sealed class ProcessReaper
{
    private const int MaxUnclaimed = 4096;

    private readonly Lock _lock = new();
    private readonly Dictionary<int, TaskCompletionSource<ProcessExit>> _waiters = [];
    private readonly Dictionary<int, (ProcessExit Exit, long Sequence)> _unclaimed = [];
    private readonly Queue<(int Pid, long Sequence)> _unclaimedOrder = new();
    private readonly SemaphoreSlim _childAdded = new(0);
    private long _sequence;
    private Thread? _thread;

    private ProcessReaper()
    {
    }

    /// <summary>The one reaper of this process.</summary>
    public static ProcessReaper Shared { get; } = new();

    /// <summary>Raised (on the reaper thread) for every exit, claimed or not.</summary>
    public event Action<ProcessExit>? Exited;

    /// <summary>
    /// A mark to take before creating a child: <see cref="WaitForExitAsync"/> with it ignores exits recorded
    /// earlier, so a recycled pid never matches an old exit.
    /// </summary>
    public long Mark
    {
        get
        {
            lock (_lock)
            {
                return _sequence;
            }
        }
    }

    /// <summary>Starts the reaper thread (once).</summary>
    public void Start()
    {
        lock (_lock)
        {
            if (_thread != null)
            {
                return;
            }

            _thread = new Thread(Run) { IsBackground = true, Name = "reaper" };
            _thread.Start();
        }
    }

    /// <summary>Tells the reaper a child exists (it sleeps while there is none).</summary>
    public void ChildSpawned() => _childAdded.Release();

    /// <summary>Completes when the process exits; pid must be a child (or a reparented descendant).</summary>
    /// <param name="pid">The process.</param>
    /// <param name="since">A <see cref="Mark"/> taken before the process was created.</param>
    public Task<ProcessExit> WaitForExitAsync(int pid, long since)
    {
        lock (_lock)
        {
            if (_unclaimed.TryGetValue(pid, out var recorded) && recorded.Sequence > since)
            {
                _unclaimed.Remove(pid);
                return Task.FromResult(recorded.Exit);
            }

            if (!_waiters.TryGetValue(pid, out var waiter))
            {
                waiter = new TaskCompletionSource<ProcessExit>(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.Add(pid, waiter);
            }

            return waiter.Task;
        }
    }

    private void Run()
    {
        while (true)
        {
            var pid = Libc.waitpid(-1, out var status, 0);
            if (pid > 0)
            {
                Record(new ProcessExit(pid, status, DateTimeOffset.UtcNow));
                continue;
            }

            var errno = Libc.Errno;
            if (errno == Libc.ECHILD)
            {
                // No children: sleep until one is spawned (reparented orphans only come from our children).
                _childAdded.Wait();
            }
            else if (errno != Libc.EINTR)
            {
                // Unexpected: avoid spinning.
                _childAdded.Wait(100);
            }
        }
    }

    private void Record(ProcessExit exit)
    {
        TaskCompletionSource<ProcessExit>? waiter;
        lock (_lock)
        {
            _sequence++;
            if (_waiters.Remove(exit.Pid, out waiter))
            {
                _unclaimed.Remove(exit.Pid);
            }
            else
            {
                _unclaimed[exit.Pid] = (exit, _sequence);
                _unclaimedOrder.Enqueue((exit.Pid, _sequence));
                while (_unclaimedOrder.Count > MaxUnclaimed)
                {
                    var (oldPid, oldSequence) = _unclaimedOrder.Dequeue();
                    if (_unclaimed.TryGetValue(oldPid, out var entry) && entry.Sequence == oldSequence)
                    {
                        _unclaimed.Remove(oldPid);
                    }
                }
            }
        }

        waiter?.TrySetResult(exit);
        try
        {
            Exited?.Invoke(exit);
        }
        catch (Exception)
        {
            // An observer's failure must not stop the reaper.
        }
    }
}
