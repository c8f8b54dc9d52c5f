using System.Runtime.InteropServices;

namespace ShimV2.Hypervisor;

/// <summary>The few libc calls .NET does not wrap.</summary>
internal static partial class Native
{
    public const int ORdWr = 0x2;
    public const int OCloExec = 0x80000;
    public const int EAddrInUse = 98;
    public const int ENoEnt = 2;

    /// <summary>VHOST_VSOCK_SET_GUEST_CID = _IOW(VHOST_VIRTIO 0xAF, 0x60, __u64).</summary>
    public const uint VhostVsockSetGuestCid = 0x4008AF60;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, ref ulong argument);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "strerror")]
    private static partial IntPtr StrError(int errno);

    public static string ErrorText(int errno) => Marshal.PtrToStringUTF8(StrError(errno)) ?? $"errno {errno}";
}
