using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Stdio;

/// <summary>
/// One output stream of a container process: a thread copies the pipe (or pty master) into a bounded buffer
/// and stops reading while the buffer is full (back-pressure on the process). Readers block until data; an
/// empty read means end of stream, given only once the process has exited and the pipe is drained.
/// After the process exits, a pipe still held open by a background descendant is given up after a quiet
/// grace period, so an exited process's output always ends.
/// </summary>
internal sealed class OutputStream : IDisposable
{
    public const int DefaultCapacity = 2 << 20;

    private readonly SafeFd _fd;
    private readonly SafeFd _control;
    private readonly int _capacity;
    private readonly int _graceMs;
    private readonly string _name;
    private readonly object _lock = new();
    private readonly Queue<byte[]> _chunks = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _headOffset;
    private int _count;
    private bool _done;
    private bool _exited;
    private bool _cancelled;
    private Thread? _thread;

    public OutputStream(SafeFd fd, string name, int capacity = DefaultCapacity, TimeSpan? exitGrace = null)
    {
        _fd = fd;
        _name = name;
        _capacity = capacity;
        _graceMs = (int)(exitGrace ?? TimeSpan.FromSeconds(2)).TotalMilliseconds;
        var control = Libc.eventfd(0, Libc.EFD_CLOEXEC);
        if (control < 0)
        {
            throw Libc.NativeError("eventfd");
        }

        _control = new SafeFd(control);
    }

    /// <summary>Completes when the pump stopped reading: end of stream, grace expiry, or cancellation.</summary>
    public Task Drained => _completion.Task;

    /// <summary>Bytes buffered and not yet read.</summary>
    public int Buffered
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    public void Start()
    {
        _thread = new Thread(Pump) { IsBackground = true, Name = _name };
        _thread.Start();
    }

    /// <summary>The process has exited: readers may now see end of stream; the pump starts its grace timer.</summary>
    public void ProcessExited()
    {
        lock (_lock)
        {
            _exited = true;
            SignalChanged();
        }

        Poke();
    }

    /// <summary>Stops the pump now; buffered data stays readable.</summary>
    public void Cancel()
    {
        lock (_lock)
        {
            _cancelled = true;
            Monitor.PulseAll(_lock);
            SignalChanged();
        }

        Poke();
    }

    /// <summary>Up to max bytes; waits for data; empty = end of stream.</summary>
    public async Task<byte[]> ReadAsync(int max, CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_count > 0)
                {
                    return Take(max);
                }

                if (_done && (_exited || _cancelled))
                {
                    return [];
                }

                wait = _changed.Task;
            }

            await wait.WaitAsync(ct);
        }
    }

    public void Dispose()
    {
        Cancel();
        _thread?.Join(TimeSpan.FromSeconds(5));
        _control.Dispose();
        _fd.Dispose();
    }

    private byte[] Take(int max)
    {
        var n = Math.Min(max, _count);
        var result = new byte[n];
        var copied = 0;
        while (copied < n)
        {
            var head = _chunks.Peek();
            var take = Math.Min(n - copied, head.Length - _headOffset);
            Buffer.BlockCopy(head, _headOffset, result, copied, take);
            copied += take;
            _headOffset += take;
            if (_headOffset == head.Length)
            {
                _chunks.Dequeue();
                _headOffset = 0;
            }
        }

        _count -= n;
        Monitor.PulseAll(_lock);
        return result;
    }

    private void SignalChanged()
    {
        var old = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        old.TrySetResult();
    }

    private unsafe void Poke()
    {
        _control.TryUse(fd =>
        {
            ulong one = 1;
            Libc.write(fd, (byte*)&one, sizeof(ulong));
        });
    }

    private unsafe void Pump()
    {
        var fdAdded = false;
        var controlAdded = false;
        try
        {
            _fd.DangerousAddRef(ref fdAdded);
            _control.DangerousAddRef(ref controlAdded);
            var fd = _fd.Fd;
            var control = _control.Fd;
            var buffer = new byte[64 * 1024];
            var exitSeen = false;
            var fds = stackalloc Libc.PollFd[2];
            while (true)
            {
                lock (_lock)
                {
                    while (_count >= _capacity && !_cancelled)
                    {
                        Monitor.Wait(_lock);
                    }

                    if (_cancelled)
                    {
                        return;
                    }

                    exitSeen = _exited;
                }

                fds[0] = new Libc.PollFd { Fd = fd, Events = Libc.POLLIN };
                fds[1] = new Libc.PollFd { Fd = control, Events = Libc.POLLIN };
                var rc = Libc.poll(fds, 2, exitSeen ? _graceMs : -1);
                if (rc < 0)
                {
                    if (Libc.Errno == Libc.EINTR)
                    {
                        continue;
                    }

                    return;
                }

                if (rc == 0)
                {
                    // Exited, and nothing came for the grace period: a descendant holds the pipe. Stop here.
                    return;
                }

                if ((fds[1].Revents & Libc.POLLIN) != 0)
                {
                    ulong value;
                    Libc.read(control, (byte*)&value, sizeof(ulong));
                }

                if ((fds[0].Revents & (Libc.POLLIN | Libc.POLLHUP | Libc.POLLERR | Libc.POLLNVAL)) == 0)
                {
                    continue;
                }

                var n = Libc.Read(fd, buffer);
                if (n == -Libc.EAGAIN)
                {
                    continue;
                }

                if (n <= 0)
                {
                    // 0: end of file; EIO: the pty's last slave closed.
                    return;
                }

                var chunk = buffer.AsSpan(0, n).ToArray();
                lock (_lock)
                {
                    _chunks.Enqueue(chunk);
                    _count += n;
                    SignalChanged();
                }
            }
        }
        finally
        {
            lock (_lock)
            {
                _done = true;
                SignalChanged();
            }

            if (controlAdded)
            {
                _control.DangerousRelease();
            }

            if (fdAdded)
            {
                _fd.DangerousRelease();
            }

            _completion.TrySetResult();
        }
    }
}
