using System.Runtime.InteropServices;

namespace ShimV2.GuestAgent.Native;

/// <summary>Setting the wall clock and feeding the kernel's RNG: what a VM restored from a template needs, since it
/// wakes with the template's clock and random state.</summary>
internal static unsafe partial class Libc
{
    private const int CLOCK_REALTIME = 0;

    /// <summary>_IOW('R', 0x03, int[2]): adds bytes to the input pool and credits their entropy.</summary>
    private const ulong RNDADDENTROPY = 0x40085203;

    /// <summary>_IO('R', 0x07): reseeds the crng from the input pool now, not at its next scheduled reseed.</summary>
    private const ulong RNDRESEEDCRNG = 0x5207;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport(Lib, SetLastError = true)]
    private static partial int clock_settime(int clock, Timespec* time);

    public static void SetRealtimeClock(long unixNanoseconds)
    {
        var time = new Timespec { Seconds = unixNanoseconds / 1_000_000_000, Nanoseconds = unixNanoseconds % 1_000_000_000 };
        if (clock_settime(CLOCK_REALTIME, &time) != 0)
        {
            throw NativeError("clock_settime");
        }
    }

    /// <summary>Adds <paramref name="entropy"/> to the pool (credited in full: it is the host's random bytes) and
    /// reseeds the crng, so two guests restored from one template never produce the same random bytes.</summary>
    public static void AddEntropyAndReseed(ReadOnlySpan<byte> entropy)
    {
        var fd = open("/dev/random", O_WRONLY | O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw NativeError("open /dev/random");
        }

        try
        {
            // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
            var info = new byte[8 + entropy.Length];
            fixed (byte* p = info)
            {
                ((int*)p)[0] = entropy.Length * 8;
                ((int*)p)[1] = entropy.Length;
                entropy.CopyTo(info.AsSpan(8));
                if (ioctl(fd, RNDADDENTROPY, p) != 0)
                {
                    throw NativeError("ioctl RNDADDENTROPY");
                }
            }

            if (ioctl(fd, RNDRESEEDCRNG, null) != 0)
            {
                throw NativeError("ioctl RNDRESEEDCRNG");
            }
        }
        finally
        {
            close(fd);
        }
    }
}
