using System.Runtime.InteropServices;

namespace ShimV2.Shim.Native;

/// <summary>
/// Reads a FIFO without ever blocking in open(2) or read(2), so teardown can always stop it: the FIFO is opened
/// O_NONBLOCK and waited on with poll(2) next to a wake pipe. End of stream is reported only after a writer
/// came and went (Linux reports POLLHUP only then), matching containerd's fifo package. <see cref="Drain"/>
/// ends the stream early for a writer that never goes away, without losing what it already wrote.
/// </summary>
internal sealed partial class FifoReader : IDisposable
{
    private const int O_RDONLY = 0;
    private const int O_NONBLOCK = 0x800;
    private const int O_CLOEXEC = 0x80000;
    private const short POLLIN = 0x1;
    private const short POLLHUP = 0x10;
    private const short POLLERR = 0x8;
    private const int EAGAIN = 11;
    private const int EINTR = 4;
    private const int F_SETPIPE_SZ = 1031;

    /// <summary>What containerd's stdio FIFOs are grown to: the default pipe-max-size.</summary>
    public const int PipeSize = 1 << 20;

    private readonly int _fd;
    private readonly int[] _wake = new int[2];
    private int _disposed;
    private bool _woken;
    private bool _draining;

    public FifoReader(string path)
    {
        _fd = Open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (_fd < 0)
        {
            throw new IOException($"open {path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        if (Pipe2(_wake, O_CLOEXEC | O_NONBLOCK) != 0)
        {
            Close(_fd);
            throw new IOException($"pipe2: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        TryEnlarge(_fd);
    }

    /// <summary>
    /// Grows the pipe behind a FIFO fd to <see cref="PipeSize"/>, so the client and the copy loop wake each other
    /// less often; a FIFO that cannot grow keeps working as it is.
    /// </summary>
    public static void TryEnlarge(int fd) => _ = Fcntl(fd, F_SETPIPE_SZ, PipeSize);

    /// <summary>
    /// Blocks until data, then returns as much as the FIFO holds up to the buffer's size; 0 at end of stream or
    /// after Dispose.
    /// </summary>
    public int Read(Span<byte> buffer)
    {
        var total = ReadSome(buffer);
        while (total > 0 && total < buffer.Length)
        {
            var n = ReadNow(buffer[total..]);
            if (n <= 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    /// <summary>One read that does not wait: bytes read, or 0 when there are none right now (or an error).</summary>
    private unsafe int ReadNow(Span<byte> buffer)
    {
        while (true)
        {
            nint n;
            fixed (byte* b = buffer)
            {
                n = ReadNative(_fd, b, (nuint)buffer.Length);
            }

            if (n >= 0 || Marshal.GetLastPInvokeError() != EINTR)
            {
                return (int)Math.Max(n, 0);
            }
        }
    }

    /// <summary>Blocks until data (returns its length), end of stream (0), or Dispose (0).</summary>
    private unsafe int ReadSome(Span<byte> buffer)
    {
        Span<PollFd> fds = stackalloc PollFd[2];
        while (Volatile.Read(ref _disposed) == 0)
        {
            fds[0] = new PollFd { Fd = _fd, Events = POLLIN };
            fds[1] = new PollFd { Fd = _wake[0], Events = POLLIN };
            int ready;
            fixed (PollFd* p = fds)
            {
                ready = Poll(p, 2, -1);
            }

            if (ready < 0)
            {
                if (Marshal.GetLastPInvokeError() == EINTR)
                {
                    continue;
                }

                throw new IOException($"poll: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }

            if (Volatile.Read(ref _woken))
            {
                return 0;
            }

            // The wake pipe is never emptied: once draining, every later poll returns at once.
            var draining = fds[1].Revents != 0;
            if (!draining && (fds[0].Revents & (POLLIN | POLLHUP | POLLERR)) == 0)
            {
                continue;
            }

            nint n;
            fixed (byte* b = buffer)
            {
                n = ReadNative(_fd, b, (nuint)buffer.Length);
            }

            if (n > 0)
            {
                return (int)n;
            }

            if (n == 0 && (draining || (fds[0].Revents & POLLHUP) != 0))
            {
                return 0;
            }

            var errno = n < 0 ? Marshal.GetLastPInvokeError() : EAGAIN;
            if (errno is not (EAGAIN or EINTR))
            {
                throw new IOException($"read: {Marshal.GetPInvokeErrorMessage(errno)}");
            }

            if (draining && errno == EAGAIN)
            {
                return 0;
            }
        }

        return 0;
    }

    /// <summary>Makes a blocked or later Read return 0; safe from any thread, before or after Dispose.</summary>
    public void Wake()
    {
        lock (_wake)
        {
            if (_disposed == 0 && !_woken)
            {
                _woken = true;
                Signal();
            }
        }
    }

    /// <summary>
    /// Makes Read stop waiting for data: it returns what the FIFO holds now, then 0 once it is empty, even while a
    /// writer keeps it open. Safe from any thread, before or after Dispose.
    /// </summary>
    public void Drain()
    {
        lock (_wake)
        {
            if (_disposed == 0 && !_woken && !_draining)
            {
                _draining = true;
                Signal();
            }
        }
    }

    /// <summary>Releases the descriptors; called by the thread that reads, once it has stopped reading.</summary>
    public void Dispose()
    {
        lock (_wake)
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1)
            {
                return;
            }

            Close(_fd);
            Close(_wake[0]);
            Close(_wake[1]);
        }
    }

    private unsafe void Signal()
    {
        byte one = 1;
        _ = WriteNative(_wake[1], &one, 1);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(int[] fds, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int Poll(PollFd* fds, nuint count, int timeout);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint ReadNative(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static unsafe partial nint WriteNative(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
