using System.Runtime.InteropServices;

namespace ShimV2.GuestAgent.Native;

/// <summary>The libc calls the agent needs and .NET lacks. Thin: errors come back as errno via <see cref="Errno"/>.</summary>
internal static unsafe partial class Libc
{
    private const string Lib = "libc.so.6";

    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EBADF = 9;
    public const int ECHILD = 10;
    public const int EAGAIN = 11;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int EPIPE = 32;
    public const int ENOSYS = 38;

    public const int O_RDONLY = 0;
    public const int O_WRONLY = 1;
    public const int O_RDWR = 2;
    public const int O_NOCTTY = 0x100;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;

    public const int SIGHUP = 1;
    public const int SIGINT = 2;
    public const int SIGKILL = 9;
    public const int SIGPIPE = 13;
    public const int SIGTERM = 15;
    public const int SIGCHLD = 17;
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    public const int PR_SET_CHILD_SUBREAPER = 36;

    public const short POSIX_SPAWN_SETSIGDEF = 0x04;
    public const short POSIX_SPAWN_SETSIGMASK = 0x08;

    public const ulong MS_RDONLY = 1;
    public const ulong MS_NOSUID = 2;
    public const ulong MS_NODEV = 4;
    public const ulong MS_NOEXEC = 8;
    public const ulong MS_SYNCHRONOUS = 16;
    public const ulong MS_REMOUNT = 32;
    public const ulong MS_MANDLOCK = 64;
    public const ulong MS_DIRSYNC = 128;
    public const ulong MS_NOSYMFOLLOW = 256;
    public const ulong MS_NOATIME = 1024;
    public const ulong MS_NODIRATIME = 2048;
    public const ulong MS_BIND = 4096;
    public const ulong MS_MOVE = 8192;
    public const ulong MS_REC = 16384;
    public const ulong MS_SILENT = 32768;
    public const ulong MS_UNBINDABLE = 1 << 17;
    public const ulong MS_PRIVATE = 1 << 18;
    public const ulong MS_SLAVE = 1 << 19;
    public const ulong MS_SHARED = 1 << 20;
    public const ulong MS_RELATIME = 1 << 21;
    public const ulong MS_STRICTATIME = 1 << 24;
    public const ulong MS_LAZYTIME = 1 << 25;

    public const int MNT_DETACH = 2;

    public const uint CLONE_NEWNS = 0x00020000;
    public const uint CLONE_NEWCGROUP = 0x02000000;
    public const uint CLONE_NEWUTS = 0x04000000;
    public const uint CLONE_NEWIPC = 0x08000000;
    public const uint CLONE_NEWUSER = 0x10000000;
    public const uint CLONE_NEWPID = 0x20000000;
    public const uint CLONE_NEWNET = 0x40000000;

    public const ulong TIOCSWINSZ = 0x5414;
    public const ulong TIOCGWINSZ = 0x5413;
    public const ulong TIOCGPTPEER = 0x5441;

    public const short POLLIN = 0x001;
    public const short POLLPRI = 0x002;
    public const short POLLOUT = 0x004;
    public const short POLLERR = 0x008;
    public const short POLLHUP = 0x010;
    public const short POLLNVAL = 0x020;

    public const int EFD_CLOEXEC = 0x80000;

    public const int LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC;
    public const int LINUX_REBOOT_CMD_RESTART = 0x01234567;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct WinSize
    {
        public ushort Rows;
        public ushort Cols;
        public ushort XPixel;
        public ushort YPixel;
    }

    public static int Errno => Marshal.GetLastPInvokeError();

    public static string StrError(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawn(out int pid, byte* path, IntPtr fileActions, IntPtr attr, byte** argv, byte** envp);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawn_file_actions_init(IntPtr actions);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawn_file_actions_adddup2(IntPtr actions, int fd, int newfd);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawn_file_actions_destroy(IntPtr actions);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawnattr_init(IntPtr attr);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawnattr_setflags(IntPtr attr, short flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawnattr_setsigmask(IntPtr attr, IntPtr sigset);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawnattr_setsigdefault(IntPtr attr, IntPtr sigset);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_spawnattr_destroy(IntPtr attr);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int sigemptyset(IntPtr set);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int sigfillset(IntPtr set);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int sigdelset(IntPtr set, int signal);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int sigaction(int signal, IntPtr act, IntPtr oldact);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int waitpid(int pid, out int status, int options);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int kill(int pid, int signal);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int pipe2(int* fds, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint read(int fd, byte* buffer, nint count);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint write(int fd, byte* buffer, nint count);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint pread(int fd, byte* buffer, nint count, long offset);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint count, int timeout);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string path, int flags, int mode);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mount(string? source, string target, string? fstype, ulong flags, string? data);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int umount2(string target, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int posix_openpt(int flags);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int grantpt(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int unlockpt(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int ptsname_r(int fd, byte* buffer, nuint length);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int ioctl(int fd, ulong request, void* arg);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int sethostname(byte* name, nuint length);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int getpid();

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int reboot(int cmd);


    [LibraryImport(Lib, SetLastError = true)]
    public static partial void sync();

    [LibraryImport(Lib, SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    /// <summary>A pipe whose both ends are close-on-exec: (read, write).</summary>
    public static (int Read, int Write) Pipe()
    {
        var fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
        {
            throw NativeError("pipe2");
        }

        return (fds[0], fds[1]);
    }

    public static void CloseQuietly(ref int fd)
    {
        if (fd >= 0)
        {
            close(fd);
            fd = -1;
        }
    }

    /// <summary>Writes everything, retrying on EINTR and short writes; throws on error (EPIPE included).</summary>
    public static void WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var offset = 0;
            while (offset < data.Length)
            {
                var n = write(fd, p + offset, data.Length - offset);
                if (n < 0)
                {
                    var errno = Errno;
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    throw NativeError("write", errno);
                }

                offset += (int)n;
            }
        }
    }

    /// <summary>One read, retrying on EINTR. Returns 0 at EOF; -errno on error.</summary>
    public static int Read(int fd, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = read(fd, p, buffer.Length);
                if (n >= 0)
                {
                    return (int)n;
                }

                var errno = Errno;
                if (errno != EINTR)
                {
                    return -errno;
                }
            }
        }
    }

    public static IOException NativeError(string what) => NativeError(what, Errno);

    public static IOException NativeError(string what, int errno) => new NativeIOException(what, errno);

    public static void Mount(string? source, string target, string? fstype, ulong flags, string? data)
    {
        if (mount(source, target, fstype, flags, data) != 0)
        {
            var errno = Errno;
            throw new NativeIOException($"mount {fstype ?? "bind"} {source} on {target}", errno);
        }
    }

    public static void SetHostname(string name)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(name);
        fixed (byte* p = bytes)
        {
            if (sethostname(p, (nuint)bytes.Length) != 0)
            {
                throw NativeError($"sethostname {name}");
            }
        }
    }
}

/// <summary>A failed system call, with its errno.</summary>
internal sealed class NativeIOException : IOException
{
    public NativeIOException(string what, int errno)
        : base($"{what}: {Libc.StrError(errno)}")
    {
        Errno = errno;
        HResult = errno;
    }

    public int Errno { get; }
}
