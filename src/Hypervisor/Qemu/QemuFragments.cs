using System.Globalization;

namespace ShimV2.Hypervisor.Qemu;

/// <summary>One piece of the QEMU command line: a few arguments that belong together.</summary>
internal abstract record QemuFragment
{
    public abstract IReadOnlyList<string> Args { get; }

    /// <summary>Escapes a value inside a QEMU option list ("a,b" must be written "a,,b").</summary>
    public static string Opt(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    protected static string N(int value) => value.ToString(CultureInfo.InvariantCulture);

    protected static string N(uint value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>No host config files, no default devices, no display, exit instead of rebooting.</summary>
internal sealed record BaseFragment(string Name) : QemuFragment
{
    public override IReadOnlyList<string> Args =>
        ["-name", Opt(Name), "-no-user-config", "-nodefaults", "-nographic", "-display", "none", "-no-reboot"];
}

/// <summary>
/// QEMU's seccomp filter (`-sandbox`): a guest that takes over QEMU still cannot gain privileges (setuid and the
/// like), start programs (fork/execve: nothing we use spawns; tap scripts are off), change its scheduling or
/// resource limits, or make obsolete system calls. QEMU 7.2 and later have every option used here.
/// </summary>
internal sealed record SeccompSandboxFragment : QemuFragment
{
    public const string Options = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

    public override IReadOnlyList<string> Args => ["-sandbox", Options];
}

/// <summary>
/// Machine type and accelerator; TCG emulates the richest CPU it can, KVM passes the host's through. Under TCG the
/// CPU does not announce ERMS: TCG runs `rep movsb`/`rep stosb` one byte per iteration, and with ERMS the guest
/// kernel and glibc copy and clear memory that way (every pipe and virtio-serial byte, every fresh page); without
/// it they use 8-byte or vector loops, several times faster there. (Hot-plugged vCPUs get the same flags.)
/// <para>
/// Under TCG, <paramref name="TcgTranslationCacheMiB"/> caps the translated-code cache (<c>-accel tcg,tb-size=</c>):
/// QEMU 7.2's default is 1 GiB on a host with 8 GiB or more, which QEMU fills (and keeps resident, in huge pages)
/// before it ever flushes, so an idle pod's QEMU held some 60 MiB of translated boot code and a busy one keeps
/// growing until the cache is full. A full cache is flushed and code translated again as it runs. 0 leaves QEMU's default.
/// KVM runs guest code natively and has no such cache.
/// </para>
/// </summary>
internal sealed record MachineFragment(string MachineType, AcceleratorKind Accelerator, int TcgTranslationCacheMiB = 0) : QemuFragment
{
    public override IReadOnlyList<string> Args => Accelerator switch
    {
        AcceleratorKind.Kvm => ["-machine", $"{MachineType},accel=kvm", "-cpu", "host"],
        // tb-size is a property of the accelerator object, which only -accel sets ("-machine accel=" and -accel
        // cannot be combined).
        _ when TcgTranslationCacheMiB > 0 => ["-machine", MachineType, "-accel", $"tcg,tb-size={N(TcgTranslationCacheMiB)}", "-cpu", "max,erms=off"],
        _ => ["-machine", $"{MachineType},accel=tcg", "-cpu", "max,erms=off"],
    };
}

/// <summary>Guest memory; a larger maximum adds DIMM slots for hotplug.</summary>
internal sealed record MemoryFragment(int MemoryMiB, int MaxMemoryMiB, int Slots) : QemuFragment
{
    public override IReadOnlyList<string> Args => MaxMemoryMiB > MemoryMiB
        ? ["-m", $"{N(MemoryMiB)}M,slots={N(Slots)},maxmem={N(MaxMemoryMiB)}M"]
        : ["-m", $"{N(MemoryMiB)}M"];
}

/// <summary>vCPUs; a larger maximum leaves hot-pluggable CPU sockets.</summary>
internal sealed record SmpFragment(int VCpus, int MaxVCpus) : QemuFragment
{
    public override IReadOnlyList<string> Args => MaxVCpus > VCpus
        ? ["-smp", $"cpus={N(VCpus)},maxcpus={N(MaxVCpus)}"]
        : ["-smp", $"cpus={N(VCpus)}"];
}

/// <summary>
/// The firmware image (<c>-bios</c>); none leaves QEMU's default, SeaBIOS. qboot skips SeaBIOS's device scan and
/// boot menu and loads the kernel and initrd with fw_cfg DMA; it enters a PVH kernel (an uncompressed ELF) too.
/// </summary>
internal sealed record FirmwareFragment(string Path) : QemuFragment
{
    public override IReadOnlyList<string> Args => string.IsNullOrEmpty(Path) ? [] : ["-bios", Path];
}

/// <summary>Direct kernel boot: a bzImage, or an ELF vmlinux with a PVH note, which QEMU enters directly (no
/// decompressor, no real-mode setup). Plain arguments, not option lists: no comma escaping.</summary>
internal sealed record KernelFragment(string KernelPath, string? InitrdPath, string CommandLine) : QemuFragment
{
    /// <summary>Always present: the console on the first serial port (which goes to console.log).</summary>
    public const string BaseParams = "console=ttyS0 quiet panic=1";

    /// <summary>
    /// Always present: no SWIOTLB bounce buffer. An x86 kernel reserves (and zeroes, so the host backs it) 64 MiB for
    /// one whenever memory may lie above 4 GiB, which the hotplug area in QEMU's SRAT always does: a third of an idle
    /// 512 MiB guest's RAM. It only serves devices that DMA through the kernel's DMA API with a 32-bit mask; QEMU's
    /// virtio devices (without iommu_platform) hand the guest's physical addresses straight to QEMU, so none here
    /// needs it.
    /// </summary>
    public const string NoBounceBufferParams = "swiotlb=noforce";

    /// <summary>With memory hotplug: hot-plugged DIMMs come online by themselves (Debian's kernel leaves them offline).</summary>
    public const string MemoryHotplugParams = "memhp_default_state=online";

    public static string Params(string extra, bool memoryHotplug = false)
    {
        var fixedParams = memoryHotplug ? $"{BaseParams} {NoBounceBufferParams} {MemoryHotplugParams}" : $"{BaseParams} {NoBounceBufferParams}";
        return string.IsNullOrWhiteSpace(extra) ? fixedParams : $"{fixedParams} {extra.Trim()}";
    }

    public override IReadOnlyList<string> Args => string.IsNullOrEmpty(InitrdPath)
        ? ["-kernel", KernelPath, "-append", CommandLine]
        : ["-kernel", KernelPath, "-initrd", InitrdPath, "-append", CommandLine];
}

/// <summary>The first serial port (ttyS0) written to a file.</summary>
internal sealed record SerialConsoleFragment(string LogPath) : QemuFragment
{
    public override IReadOnlyList<string> Args =>
        ["-chardev", $"file,id=console,path={Opt(LogPath)}", "-serial", "chardev:console"];
}

/// <summary>The QMP monitor on a unix socket QEMU listens on.</summary>
internal sealed record QmpFragment(string SocketPath) : QemuFragment
{
    public override IReadOnlyList<string> Args =>
        ["-chardev", $"socket,id=qmp,path={Opt(SocketPath)},server=on,wait=off", "-mon", "chardev=qmp,mode=control"];
}

/// <summary>AF_VSOCK to the guest through the host's vhost-vsock.</summary>
internal sealed record VsockFragment(uint GuestCid) : QemuFragment
{
    public override IReadOnlyList<string> Args => ["-device", $"vhost-vsock-pci,id=vsock0,guest-cid={N(GuestCid)}"];
}

/// <summary>A virtio-serial port named <see cref="GuestChannel.VirtioSerialPortName"/>, host side a unix socket QEMU listens on.</summary>
internal sealed record VirtioSerialFragment(string SocketPath) : QemuFragment
{
    public override IReadOnlyList<string> Args =>
    [
        "-device", "virtio-serial-pci,id=serial0",
        "-chardev", $"socket,id=agent,path={Opt(SocketPath)},server=on,wait=off",
        "-device", $"virtserialport,chardev=agent,name={GuestChannel.VirtioSerialPortName}",
    ];
}

/// <summary>A host directory exported with virtio-9p (QEMU 7.2 syntax; remap keeps inode numbers unique across host mounts).</summary>
internal sealed record NinePShareFragment(string Directory, string MountTag) : QemuFragment
{
    public override IReadOnlyList<string> Args =>
    [
        "-fsdev", $"local,id=fs0,path={Opt(Directory)},security_model=none,multidevs=remap",
        "-device", $"virtio-9p-pci,fsdev=fs0,mount_tag={Opt(MountTag)}",
    ];
}

/// <summary>
/// A virtio-net NIC on a tap QEMU opens by name (created if missing, removed with QEMU); no scripts: the caller wires
/// the tap. romfile= skips the PXE option ROM a direct kernel boot never uses.
/// </summary>
internal sealed record NicFragment(int Index, VmNic Nic) : QemuFragment
{
    public override IReadOnlyList<string> Args =>
    [
        "-netdev", $"tap,id=net{N(Index)},ifname={Opt(Nic.TapName)},script=no,downscript=no",
        "-device", $"virtio-net-pci,netdev=net{N(Index)},mac={Nic.Mac},romfile=",
    ];
}

/// <summary>
/// A virtio-balloon that never inflates but takes the guest's free-page reports: free memory the guest touched
/// (boot, page cache, an exited process) goes back to the host in 2 MiB blocks, so QEMU's RSS follows what the
/// guest uses now rather than the most it ever used. The guest loads virtio_balloon at boot.
/// </summary>
internal sealed record FreePageReportingFragment : QemuFragment
{
    public override IReadOnlyList<string> Args => ["-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on"];
}

/// <summary>Entropy for the guest, so its crng is ready at once.</summary>
internal sealed record RngFragment : QemuFragment
{
    public override IReadOnlyList<string> Args =>
        ["-object", "rng-random,filename=/dev/urandom,id=rng0", "-device", "virtio-rng-pci,rng=rng0"];
}

internal sealed record PidFileFragment(string PidFilePath) : QemuFragment
{
    public override IReadOnlyList<string> Args => ["-pidfile", PidFilePath];
}
