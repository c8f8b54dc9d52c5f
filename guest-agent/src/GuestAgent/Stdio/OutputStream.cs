using System.Buffers;
using System.Diagnostics;
using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Stdio;

/// <summary>
/// One output stream of a container process: a thread copies the pipe (or pty master) into a bounded buffer
/// and stops reading while the buffer is full (back-pressure on the process). Readers block until data; an
/// empty read means end of stream, given only once the process has exited and the pipe is drained.
/// After the process exits, a pipe still held open by a background descendant is given up after a quiet
/// grace period, so an exited process's output always ends.
/// </summary>
/// <remarks>
/// Every host request and every wake-up costs the guest far more than the bytes it moves (under TCG a round
/// trip is milliseconds of guest CPU), so output travels in as few, large pieces as latency allows:
/// while the process runs the pipe is read only when a reader waits on an empty buffer, and the pipe, enlarged
/// by <see cref="ProcessStdio"/>, buffers in between; each read takes all the pipe holds into an array of its
/// own, which a reader usually gets whole, uncopied; and output that streams in small writes is given a
/// moment to gather before a read, while output after a pause goes out at once. Once the process has exited
/// the pipe is drained eagerly into the buffer, as WaitProcess waits for that.
/// </remarks>
internal sealed class OutputStream : IDisposable
{
    public const int DefaultCapacity = 2 << 20;

    /// <summary>
    /// Largest single read from the pipe, and largest chunk handed out: about what an enlarged pipe holds, small
    /// enough that an answer carrying it still fits a 1 MiB pooled buffer.
    /// </summary>
    public const int MaxChunk = (1 << 20) - 4096;

    /// <summary>Smallest read: what FIONREAD reports can lag behind a pty's input.</summary>
    private const int MinRead = 4096;

    /// <summary>A buffered array at least this big is handed out whole rather than merged with the next.</summary>
    private const int HandOutWhole = 64 * 1024;

    /// <summary>Streaming output with less than this in the pipe is given time to gather before a read.</summary>
    private const int CoalesceBelow = 128 * 1024;

    /// <summary>At most this many <see cref="CoalesceStep"/>s to gather.</summary>
    private const int CoalesceSteps = 5;

    /// <summary>Output counts as streaming when the previous read was at most this long ago.</summary>
    private static readonly TimeSpan StreamingWindow = TimeSpan.FromMilliseconds(10);

    private static readonly TimeSpan CoalesceStep = TimeSpan.FromMilliseconds(1);

    private readonly SafeFd _fd;
    private readonly SafeFd _control;
    private readonly int _capacity;
    private readonly int _graceMs;
    private readonly string _name;
    private readonly object _lock = new();
    private readonly Queue<OutputChunk> _chunks = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _headOffset;
    private int _count;
    private long _handedOut;
    private int _waiting;
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
            Monitor.PulseAll(_lock);
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

    /// <summary>
    /// Up to max bytes; waits for data; empty = end of stream. The chunk's array is pooled: the caller returns it
    /// (<see cref="OutputChunk.Return"/>) once done with it. Concurrent reads each get their own piece of the
    /// stream; the chunk's offset says where it lies (at the end, the stream's length).
    /// </summary>
    public async Task<OutputChunk> ReadAsync(int max, CancellationToken ct)
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
                    return OutputChunk.End with { Offset = _handedOut };
                }

                wait = _changed.Task;
                if (_waiting++ == 0)
                {
                    // The pump may be parked until someone wants data.
                    Monitor.PulseAll(_lock);
                }
            }

            try
            {
                await wait.WaitAsync(ct);
            }
            finally
            {
                lock (_lock)
                {
                    _waiting--;
                }
            }
        }
    }

    public void Dispose()
    {
        Cancel();
        _thread?.Join(TimeSpan.FromSeconds(5));
        _control.Dispose();
        _fd.Dispose();
    }

    private OutputChunk Take(int max)
    {
        var first = _chunks.Peek();
        OutputChunk result;
        if (_headOffset == 0 && first.Length <= max && (_chunks.Count == 1 || first.Length >= HandOutWhole))
        {
            _chunks.Dequeue();
            result = first with { Offset = _handedOut };
        }
        else
        {
            var length = Math.Min(max, _count);
            result = new OutputChunk(ArrayPool<byte>.Shared.Rent(length), length, _handedOut);
            var copied = 0;
            while (copied < length)
            {
                var head = _chunks.Peek();
                var take = Math.Min(length - copied, head.Length - _headOffset);
                Buffer.BlockCopy(head.Array, _headOffset, result.Array, copied, take);
                copied += take;
                _headOffset += take;
                if (_headOffset == head.Length)
                {
                    _chunks.Dequeue().Return();
                    _headOffset = 0;
                }
            }
        }

        _count -= result.Length;
        _handedOut += result.Length;
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

    private static unsafe int Available(int fd)
    {
        var available = 0;
        return Libc.ioctl(fd, PipeFds.FIONREAD, &available) == 0 ? available : 0;
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
            var exitSeen = false;
            var lastRead = 0L;
            var fds = stackalloc Libc.PollFd[2];
            while (true)
            {
                int room;
                lock (_lock)
                {
                    while (!_cancelled && (_count >= _capacity || (!_exited && _waiting == 0)))
                    {
                        Monitor.Wait(_lock);
                    }

                    if (_cancelled)
                    {
                        return;
                    }

                    exitSeen = _exited;
                    room = _capacity - _count;
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

                var available = Available(fd);
                if (!exitSeen && available < CoalesceBelow && (fds[0].Revents & Libc.POLLHUP) == 0
                    && Stopwatch.GetElapsedTime(lastRead) < StreamingWindow)
                {
                    // Output is streaming in small writes: let the writer go on a moment and take more in one read,
                    // rather than one host round trip per write (each costs the guest far more than the bytes).
                    // Output after a pause goes out at once.
                    for (var waited = 0; waited < CoalesceSteps && available < CoalesceBelow; waited++)
                    {
                        Thread.Sleep(CoalesceStep);
                        available = Available(fd);
                    }
                }

                // Pooled: memory that was touched before, rather than fresh pages for the kernel to clear.
                var size = Math.Min(Math.Max(available, MinRead), Math.Min(room, MaxChunk));
                var array = ArrayPool<byte>.Shared.Rent(size);
                var n = Libc.Read(fd, array.AsSpan(0, size));
                if (n <= 0)
                {
                    ArrayPool<byte>.Shared.Return(array);
                    if (n == -Libc.EAGAIN)
                    {
                        continue;
                    }

                    // 0: end of file; EIO: the pty's last slave closed.
                    return;
                }

                lastRead = Stopwatch.GetTimestamp();
                lock (_lock)
                {
                    _chunks.Enqueue(new OutputChunk(array, n));
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

/// <summary>
/// Bytes read from an output stream, in an array rented from <see cref="ArrayPool{T}.Shared"/>, and where in the
/// stream they lie.
/// </summary>
internal readonly record struct OutputChunk(byte[] Array, int Length, long Offset = 0)
{
    /// <summary>End of stream.</summary>
    public static readonly OutputChunk End = new([], 0);

    public ReadOnlyMemory<byte> Memory => Array.AsMemory(0, Length);

    /// <summary>Hands the array back to the pool; the chunk must not be used afterwards.</summary>
    public void Return()
    {
        if (Array.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(Array);
        }
    }
}
