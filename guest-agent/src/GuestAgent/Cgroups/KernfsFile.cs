using System.Text;
using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Cgroups;

/// <summary>
/// A cgroup interface file kept open to wait for changes: cgroup.events and memory.events raise POLLPRI when a
/// value changes (each read re-arms). Waits can be interrupted with <see cref="Wake"/>.
/// </summary>
internal sealed unsafe class KernfsFile : IDisposable
{
    private readonly SafeFd _fd;
    private readonly SafeFd _wake;

    public KernfsFile(string path)
    {
        var fd = Libc.open(path, Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new NativeIOException($"open {path}", Libc.Errno);
        }

        _fd = new SafeFd(fd);
        var wake = Libc.eventfd(0, Libc.EFD_CLOEXEC);
        if (wake < 0)
        {
            _fd.Dispose();
            throw Libc.NativeError("eventfd");
        }

        _wake = new SafeFd(wake);
        Path = path;
    }

    public string Path { get; }

    /// <summary>The whole file (re-arms change notification).</summary>
    public string Read()
    {
        var text = "";
        var read = _fd.TryUse(fd => text = ReadAll(fd));
        ObjectDisposedException.ThrowIf(!read, this);

        return text;
    }

    /// <summary>Blocks until the file changed, the timeout passed, or <see cref="Wake"/>; true if it changed.</summary>
    public bool WaitChanged(int timeoutMs)
    {
        var changed = false;
        _fd.TryUse(fd => _wake.TryUse(wake => changed = Poll(fd, wake, timeoutMs)));
        return changed;
    }

    /// <summary>Ends a pending (and every later) <see cref="WaitChanged"/>.</summary>
    public void Wake()
    {
        _wake.TryUse(fd =>
        {
            ulong one = 1;
            Libc.write(fd, (byte*)&one, sizeof(ulong));
        });
    }

    public void Dispose()
    {
        Wake();
        _fd.Dispose();
        _wake.Dispose();
    }

    private static bool Poll(int fd, int wake, int timeoutMs)
    {
        var fds = stackalloc Libc.PollFd[2];
        fds[0] = new Libc.PollFd { Fd = fd, Events = Libc.POLLPRI };
        fds[1] = new Libc.PollFd { Fd = wake, Events = Libc.POLLIN };
        var rc = Libc.poll(fds, 2, timeoutMs);
        return rc > 0 && (fds[1].Revents & Libc.POLLIN) == 0 && (fds[0].Revents & (Libc.POLLPRI | Libc.POLLERR)) != 0;
    }

    private static string ReadAll(int fd)
    {
        var buffer = new byte[8192];
        var total = 0;
        while (true)
        {
            nint n;
            fixed (byte* p = buffer)
            {
                n = Libc.pread(fd, p + total, buffer.Length - total, total);
            }

            if (n < 0)
            {
                if (Libc.Errno == Libc.EINTR)
                {
                    continue;
                }

                throw Libc.NativeError("read cgroup file");
            }

            if (n == 0)
            {
                return Encoding.UTF8.GetString(buffer, 0, total);
            }

            total += (int)n;
            if (total == buffer.Length)
            {
                Array.Resize(ref buffer, buffer.Length * 2);
            }
        }
    }
}
