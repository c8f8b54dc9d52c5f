namespace ShimV2.Hypervisor.Qemu;

/// <summary>
/// Guest RAM in a shared memfd: virtiofsd (another process) reads and writes the guest's buffers in place, which a
/// private anonymous mapping would not allow. The boot RAM is this backend; hot-plugged DIMMs get memfd backends
/// with share=on too (<see cref="MemoryBackendMemfdAdd"/>).
/// </summary>
internal sealed record SharedMemoryFragment(int MemoryMiB) : QemuFragment
{
    public const string BackendId = "ram0";

    public override IReadOnlyList<string> Args =>
    [
        "-object", $"memory-backend-memfd,id={BackendId},size={N(MemoryMiB)}M,share=on",
        "-machine", $"memory-backend={BackendId}",
    ];
}

/// <summary>A vhost-user-fs device: the guest mounts <paramref name="Tag"/> with -t virtiofs; virtiofsd listens on <paramref name="SocketPath"/>.</summary>
internal sealed record VirtioFsShareFragment(string SocketPath, string Tag) : QemuFragment
{
    /// <summary>Requests in flight per queue: Kata's value; the default 128 throttles parallel I/O.</summary>
    public const int QueueSize = 1024;

    public override IReadOnlyList<string> Args =>
    [
        "-chardev", $"socket,id=virtiofs0,path={Opt(SocketPath)}",
        "-device", $"vhost-user-fs-pci,chardev=virtiofs0,tag={Opt(Tag)},queue-size={N(QueueSize)}",
    ];
}
