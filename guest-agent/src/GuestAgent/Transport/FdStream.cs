using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Transport;

/// <summary>
/// A full-duplex stream over a character device (a virtio-serial port). Reads wait in poll() together with an
/// eventfd, so disposing the stream ends a pending read at once; a hang-up (the host closed its side) reads as
/// end of stream. Reads and writes may run concurrently (one of each). Once disposed, the stream neither reads
/// nor writes, even when the fd stays open for the next connection (<c>ownsFd: false</c>).
/// </summary>
internal sealed unsafe class FdStream : Stream
{
    private readonly SafeFd _fd;
    private readonly bool _ownsFd;
    private readonly SafeFd _wake;
    private readonly FrameSplitter? _frames;
    private readonly byte[]? _chunk;
    private int _disposed;
    private volatile bool _writesClosed;

    /// <param name="fd">The port.</param>
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
        _chunk = frames == null ? null : new byte[64 * 1024];
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

    public override int Read(Span<byte> buffer)
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
                return ReadCore(_fd.Fd, buffer);
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

                var read = ReadCore(_fd.Fd, _chunk);
                if (read == 0)
                {
                    return 0;
                }

                _frames.Feed(_chunk.AsSpan(0, read));
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

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        // The blocking read runs on a pool thread; cancellation and disposal wake it through the eventfd.
        return new ValueTask<int>(Task.Run(
            () =>
            {
                using var registration = cancellationToken.Register(Wake);
                var n = Read(buffer.Span);
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

    private static void WriteCore(int fd, byte* p, int length)
    {
        var offset = 0;
        while (offset < length)
        {
            var n = Libc.write(fd, p + offset, length - offset);
            if (n < 0)
            {
                var errno = Libc.Errno;
                if (errno == Libc.EINTR)
                {
                    continue;
                }

                throw new IOException($"write to the host channel: {Libc.StrError(errno)}", errno);
            }

            offset += (int)n;
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

    private int ReadCore(int fd, Span<byte> buffer)
    {
        var wakeFd = -1;
        var wakeAdded = false;
        try
        {
            _wake.DangerousAddRef(ref wakeAdded);
            wakeFd = _wake.Fd;
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

                fds[0] = new Libc.PollFd { Fd = fd, Events = Libc.POLLIN };
                fds[1] = new Libc.PollFd { Fd = wakeFd, Events = Libc.POLLIN };
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
                    // Disposed or cancelled: end of stream for this reader.
                    return 0;
                }

                if (fds[0].Revents == 0)
                {
                    continue;
                }

                var n = Libc.Read(fd, buffer);
                if (n == -Libc.EAGAIN)
                {
                    continue;
                }

                if (n < 0)
                {
                    throw new IOException($"read from the host channel: {Libc.StrError(-n)}", -n);
                }

                return n;
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
