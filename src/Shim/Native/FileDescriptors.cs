using System.Runtime.InteropServices;

namespace ShimV2.Shim.Native;

public static class FileDescriptors
{
    /// <summary>
    /// Marks an inherited descriptor close-on-exec. The daemon's listening socket arrives as fd 3 by dup2, which
    /// clears the flag: QEMU would inherit it, and after the shim died its socket would still accept connections,
    /// so `delete` took the dead shim for alive and left its VM running.
    /// </summary>
    public static void SetCloseOnExec(int fd)
    {
        var flags = Libc.Fcntl(fd, Libc.F_GETFD, 0);
        if (flags < 0 || Libc.Fcntl(fd, Libc.F_SETFD, flags | Libc.FD_CLOEXEC) < 0)
        {
            throw new IOException($"fcntl(FD_CLOEXEC) on fd {fd}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
    }

    public static bool IsCloseOnExec(int fd) => (Libc.Fcntl(fd, Libc.F_GETFD, 0) & Libc.FD_CLOEXEC) != 0;
}
