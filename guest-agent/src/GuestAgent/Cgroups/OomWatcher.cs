using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Cgroups;

/// <summary>
/// Watches a cgroup's memory.events for oom_kill increments (a thread waiting on POLLPRI) and reports each
/// increment once through the callback.
/// </summary>
internal sealed class OomWatcher : IDisposable
{
    private readonly KernfsFile _events;
    private readonly Action _onOom;
    private readonly Thread _thread;
    private volatile bool _stopped;

    private OomWatcher(KernfsFile events, Action onOom, string name)
    {
        _events = events;
        _onOom = onOom;
        _thread = new Thread(Run) { IsBackground = true, Name = "oom " + name };
    }

    /// <summary>Starts watching, or null when the cgroup has no memory controller.</summary>
    public static OomWatcher? Start(Cgroup cgroup, string name, Action onOom)
    {
        var path = Path.Combine(cgroup.Path, "memory.events");
        if (!File.Exists(path))
        {
            return null;
        }

        var watcher = new OomWatcher(new KernfsFile(path), onOom, name);
        watcher._thread.Start();
        return watcher;
    }

    public void Dispose()
    {
        _stopped = true;
        _events.Wake();
        _thread.Join(TimeSpan.FromSeconds(2));
        _events.Dispose();
    }

    private void Run()
    {
        try
        {
            var last = CgroupStats.ParseFlatKeyed(_events.Read()).GetValueOrDefault("oom_kill");
            while (!_stopped)
            {
                if (!_events.WaitChanged(-1))
                {
                    // Woken to stop (or a spurious return): check the flag, then read again to re-arm.
                    if (_stopped)
                    {
                        return;
                    }
                }

                var now = CgroupStats.ParseFlatKeyed(_events.Read()).GetValueOrDefault("oom_kill");
                if (now > last)
                {
                    last = now;
                    _onOom();
                }
            }
        }
        catch (Exception e) when (e is NativeIOException or ObjectDisposedException)
        {
            // The cgroup was removed.
        }
    }
}
