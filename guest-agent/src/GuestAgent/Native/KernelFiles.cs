using System.Text;

namespace ShimV2.GuestAgent.Native;

/// <summary>Reads and writes of kernel interface files (sysfs, cgroupfs, procfs).</summary>
internal static unsafe class KernelFiles
{
    public static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>One write(2) of the whole value, as the kernel expects for interface files.</summary>
    public static void Write(string path, string value)
    {
        var fd = Libc.open(path, Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new NativeIOException($"open {path}", Libc.Errno);
        }

        try
        {
            var bytes = Encoding.UTF8.GetBytes(value);
            fixed (byte* p = bytes)
            {
                while (true)
                {
                    var n = Libc.write(fd, p, bytes.Length);
                    if (n >= 0)
                    {
                        return;
                    }

                    var errno = Libc.Errno;
                    if (errno != Libc.EINTR)
                    {
                        throw new NativeIOException($"write \"{value}\" to {path}", errno);
                    }
                }
            }
        }
        finally
        {
            Libc.close(fd);
        }
    }
}
