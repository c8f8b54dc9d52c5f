using System.Runtime.InteropServices;

namespace ShimV2.Shim.Native;

/// <summary>The few libc calls .NET has no API for (mounts, signals), or whose .NET API costs too much here.</summary>
internal static partial class Libc
{
    public const int EINVAL = 22;
    public const int ENOENT = 2;
    public const int EBUSY = 16;
    public const int ESRCH = 3;
    public const int EINTR = 4;

    public const ulong MS_RDONLY = 1;
    public const ulong MS_REMOUNT = 32;
    public const ulong MS_BIND = 4096;
    public const ulong MS_REC = 16384;
    public const ulong MS_SHARED = 1 << 20;

    public const int MNT_DETACH = 2;

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MountNative(string source, string target, string? fstype, ulong flags, string? data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2Native(string target, int flags);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillNative(int pid, int signal);

    public const int O_RDONLY_DIRECTORY_CLOEXEC = 0x10000 | 0x80000;
    public const int LOCK_EX = 2;
    public const int F_GETFD = 1;
    public const int F_SETFD = 2;
    public const int FD_CLOEXEC = 1;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "getrandom", SetLastError = true)]
    private static unsafe partial nint GetRandomNative(byte* buffer, nuint length, uint flags);

    /// <summary>
    /// Bytes from the kernel's CSPRNG. <see cref="System.Security.Cryptography.RandomNumberGenerator"/> draws from
    /// OpenSSL on Linux, and loading libssl and libcrypto for 64 bytes put 3.7 MiB into the daemon's resident set.
    /// </summary>
    public static unsafe byte[] RandomBytes(int count)
    {
        var bytes = new byte[count];
        fixed (byte* buffer = bytes)
        {
            for (var done = 0; done < count;)
            {
                var n = GetRandomNative(buffer + done, (nuint)(count - done), 0);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    throw new IOException($"getrandom: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                done += (int)n;
            }
        }

        return bytes;
    }

    public static void Mount(string source, string target, string? fstype, ulong flags, string? data)
    {
        if (MountNative(source, target, fstype, flags, data) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"mount {fstype ?? "bind"} {source} on {target}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
    }

    /// <summary>Unmounts; returns false when nothing was mounted there.</summary>
    public static bool Unmount(string target, int flags = 0)
    {
        if (Umount2Native(target, flags) == 0)
        {
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno is EINVAL or ENOENT)
        {
            return false;
        }

        throw new IOException($"unmount {target}: {Marshal.GetPInvokeErrorMessage(errno)}");
    }

    public static bool Kill(int pid, int signal) => KillNative(pid, signal) == 0;

    public static bool IsAlive(int pid) => pid > 0 && (KillNative(pid, 0) == 0 || Marshal.GetLastPInvokeError() != ESRCH);
}
