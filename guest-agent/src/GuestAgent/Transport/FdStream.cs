using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Transport;

/// <summary>
/// A full-duplex stream over a character device (a virtio-serial port). Reads wait in poll() together with an
/// eventfd, so disposing the stream ends a pending read at once; a hang-up (the host closed its side) reads as
/// end of stream. Reads and writes may run concurrently (one of each). Once disposed, the stream neither reads
/// nor writes, even when the fd stays open for the next connection (<c>ownsFd: false</c>).
/// </summary>
/// <remarks>
/// The fd must be non-blocking. A virtio-serial read returns at most one 4 KiB port buffer, so a read takes
/// everything the port holds, one read(2) after another, and does so on the caller's thread when anything is
/// there: only a read that has to wait goes to the thread pool. Payload bytes are read straight into the
/// caller's buffer when the frame splitter has nothing buffered ahead of them.
/// </remarks>
internal sealed unsafe class FdStream : Stream
{
    /// <summary>What one framed read asks the port for.</summary>
    private const int ChunkSize = 256 * 1024;

    private readonly SafeFd _fd;
    private readonly bool _ownsFd;
    private readonly SafeFd _wake;
    private readonly FrameSplitter? _frames;
    private int _disposed;
    private volatile bool _writesClosed;

    /// <param name="fd">The port, opened O_NONBLOCK.</param>
    /// <param name="ownsFd">Close the fd at dispose.</param>
    /// <param name="frames">
    /// Follows the TTRPC frames read: when a new client starts (see <see cref="FrameSplitter"/>), reads end and
    /// writes fail, so the old connection ends without taking the new client's bytes or answering into it.
    /// </param>
    public FdStream(SafeFd fd, bool ownsFd = true, FrameSplitter? frames = null)
    {
        _fd = fd;
        _ownsFd = ownsFd;
        _frames = frames;
        var wake = Libc.eventfd(0, Libc.EFD_CLOEXEC);
        if (wake < 0)
        {
            throw Libc.NativeError("eventfd");
        }

        _wake = new SafeFd(wake);
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer) => Read(buffer, wait: true);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var now = Read(buffer.Span, wait: false);
        if (now >= 0)
        {
            return new ValueTask<int>(now);
        }

        // Nothing there yet: the waiting read runs on a pool thread; cancellation and disposal wake it.
        return new ValueTask<int>(Task.Run(
            () =>
            {
                using var registration = cancellationToken.Register(Wake);
                var n = Read(buffer.Span, wait: true);
                cancellationToken.ThrowIfCancellationRequested();
                return n;
            },
            CancellationToken.None));
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (Volatile.Read(ref _disposed) != 0 || _writesClosed)
        {
            throw new IOException("the host connection is closed");
        }

        var added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException e)
        {
            throw new IOException("the host channel is closed", e);
        }

        try
        {
            fixed (byte* p = buffer)
            {
                WriteCore(_fd.Fd, p, buffer.Length);
            }
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
            }
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && disposing)
        {
            Wake();
            if (_ownsFd)
            {
                _fd.Dispose();
            }

            _wake.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>Bytes read (at least 1), 0 at end of stream, -1 when nothing is there and !wait.</summary>
    private int Read(Span<byte> buffer, bool wait)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        var added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }

        try
        {
            if (_frames == null)
            {
                return ReadCore(_fd.Fd, buffer, wait);
            }

            while (true)
            {
                var n = _frames.Take(buffer);
                if (n > 0)
                {
                    return n;
                }

                if (_frames.NewClient)
                {
                    _writesClosed = true;
                    return 0;
                }

                var direct = _frames.DirectPayload;
                if (direct > 0)
                {
                    n = ReadCore(_fd.Fd, buffer[..Math.Min(direct, buffer.Length)], wait);
                    if (n > 0)
                    {
                        _frames.ConsumedDirect(n);
                    }

                    return n;
                }

                var read = ReadCore(_fd.Fd, _frames.FeedBuffer(ChunkSize)[..ChunkSize], wait);
                if (read <= 0)
                {
                    return read;
                }

                _frames.Advance(read);
            }
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
            }
        }
    }

    private void WriteCore(int fd, byte* p, int length)
    {
        var offset = 0;
        while (offset < length)
        {
            var n = Libc.write(fd, p + offset, length - offset);
            if (n >= 0)
            {
                offset += (int)n;
                continue;
            }

            var errno = Libc.Errno;
            if (errno == Libc.EINTR)
            {
                continue;
            }

            if (errno != Libc.EAGAIN)
            {
                throw new IOException($"write to the host channel: {Libc.StrError(errno)}", errno);
            }

            // The host is not taking data as fast: wait until the port has room (or goes away).
            if ((WaitFor(fd, Libc.POLLOUT) & Libc.POLLOUT) == 0)
            {
                throw new IOException("the host channel is closed");
            }
        }
    }

    private void Wake()
    {
        _wake.TryUse(fd =>
        {
            ulong one = 1;
            Libc.write(fd, (byte*)&one, sizeof(ulong));
        });
    }

    /// <summary>
    /// Reads what the port holds, up to the buffer's size. Bytes read (at least 1), 0 at end of stream, -1 when
    /// nothing is there and !wait; with wait, blocks in poll until something is.
    /// </summary>
    private int ReadCore(int fd, Span<byte> buffer, bool wait)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = Libc.Read(fd, buffer[total..]);
            if (n > 0)
            {
                total += n;
                continue;
            }

            if (n == 0 || total > 0)
            {
                return total;
            }

            if (n != -Libc.EAGAIN)
            {
                throw new IOException($"read from the host channel: {Libc.StrError(-n)}", -n);
            }

            if (!wait)
            {
                return -1;
            }

            var revents = WaitFor(fd, Libc.POLLIN);
            if (revents == 0)
            {
                // Disposed or cancelled: end of stream for this reader.
                return 0;
            }
        }

        return total;
    }

    /// <summary>poll() for events (hang-ups and errors always count); 0 when disposed or woken first.</summary>
    private short WaitFor(int fd, short events)
    {
        var wakeAdded = false;
        try
        {
            _wake.DangerousAddRef(ref wakeAdded);
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }

        try
        {
            var fds = stackalloc Libc.PollFd[2];
            while (true)
            {
                if (Volatile.Read(ref _disposed) != 0)
                {
                    return 0;
                }

                fds[0] = new Libc.PollFd { Fd = fd, Events = events };
                fds[1] = new Libc.PollFd { Fd = _wake.Fd, Events = Libc.POLLIN };
                var rc = Libc.poll(fds, 2, -1);
                if (rc < 0)
                {
                    var errno = Libc.Errno;
                    if (errno == Libc.EINTR)
                    {
                        continue;
                    }

                    throw new IOException($"poll the host channel: {Libc.StrError(errno)}", errno);
                }

                if ((fds[1].Revents & Libc.POLLIN) != 0)
                {
                    return 0;
                }

                if (fds[0].Revents != 0)
                {
                    return fds[0].Revents;
                }
            }
        }
        finally
        {
            if (wakeAdded)
            {
                _wake.DangerousRelease();
            }
        }
    }
}
