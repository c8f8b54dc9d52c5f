using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Stdio;

/// <summary>Pipe tuning for process stdio.</summary>
internal static class PipeFds
{
    /// <summary>Bytes a pipe or tty holds unread (int out).</summary>
    public const ulong FIONREAD = 0x541B;

    /// <summary>What a process's stdio pipes hold (the default pipe-max-size): fewer wake-ups per byte.</summary>
    public const int PipeSize = 1 << 20;

    private const int F_SETPIPE_SZ = 1031;

    /// <summary>Grows the pipe of fd to <see cref="PipeSize"/>; a pipe that cannot grow keeps working as it is.</summary>
    public static void TryEnlarge(int fd) => _ = Libc.fcntl(fd, F_SETPIPE_SZ, PipeSize);
}
