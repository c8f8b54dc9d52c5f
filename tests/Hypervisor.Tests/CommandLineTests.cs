using ShimV2.Hypervisor.Qemu;

namespace ShimV2.Hypervisor.Tests;

/// <summary>One table per QEMU command-line fragment, then how <see cref="QemuCommandLine"/> composes them.</summary>
public sealed class CommandLineTests
{
    public static TheoryData<string?, string, string[]> KernelCases => new()
    {
        { "/boot/initrd.img", "console=ttyS0", ["-kernel", "/boot/vmlinuz", "-initrd", "/boot/initrd.img", "-append", "console=ttyS0"] },
        { "", "console=ttyS0 quiet", ["-kernel", "/boot/vmlinuz", "-append", "console=ttyS0 quiet"] },
        { null, "a=b", ["-kernel", "/boot/vmlinuz", "-append", "a=b"] },
        { "/dir,with,commas/initrd", "x,y", ["-kernel", "/boot/vmlinuz", "-initrd", "/dir,with,commas/initrd", "-append", "x,y"] },
    };

    [Theory]
    [MemberData(nameof(KernelCases))]
    public void Kernel(string? initrd, string cmdline, string[] expected) =>
        Assert.Equal(expected, new KernelFragment("/boot/vmlinuz", initrd, cmdline).Args);

    [Theory]
    [InlineData("", false, "console=ttyS0 quiet panic=1 swiotlb=noforce")]
    [InlineData("   ", false, "console=ttyS0 quiet panic=1 swiotlb=noforce")]
    [InlineData("  init=/sbin/agent debug ", false, "console=ttyS0 quiet panic=1 swiotlb=noforce init=/sbin/agent debug")]
    [InlineData("", true, "console=ttyS0 quiet panic=1 swiotlb=noforce memhp_default_state=online")]
    [InlineData("loglevel=7", true, "console=ttyS0 quiet panic=1 swiotlb=noforce memhp_default_state=online loglevel=7")]
    public void Kernel_params(string extra, bool memoryHotplug, string expected) =>
        Assert.Equal(expected, KernelFragment.Params(extra, memoryHotplug));

    [Theory]
    [InlineData("", new string[0])]
    [InlineData("/usr/share/qemu/qboot.rom", new[] { "-bios", "/usr/share/qemu/qboot.rom" })]
    [InlineData("/fw,with,commas/bios.bin", new[] { "-bios", "/fw,with,commas/bios.bin" })]
    public void Firmware(string path, string[] expected) =>
        Assert.Equal(expected, new FirmwareFragment(path).Args);

    [Fact]
    public void Free_page_reporting_is_a_balloon_that_takes_the_guests_reports() =>
        Assert.Equal(["-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on"], new FreePageReportingFragment().Args);

    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 0)]
    public void The_balloon_is_there_only_with_free_page_reporting(bool enabled, int count)
    {
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = new HypervisorConfig { FreePageReporting = enabled } };
        var fragments = QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial), guestCid: null);
        Assert.Equal(count, fragments.OfType<FreePageReportingFragment>().Count());
    }

    [Theory]
    [InlineData(512, 512, 4, new[] { "-m", "512M" })]
    [InlineData(512, 0, 4, new[] { "-m", "512M" })]
    [InlineData(512, 2048, 4, new[] { "-m", "512M,slots=4,maxmem=2048M" })]
    [InlineData(256, 1024, 1, new[] { "-m", "256M,slots=1,maxmem=1024M" })]
    public void Memory(int memory, int maxMemory, int slots, string[] expected) =>
        Assert.Equal(expected, new MemoryFragment(memory, maxMemory, slots).Args);

    [Theory]
    [InlineData(1, 1, new[] { "-smp", "cpus=1" })]
    [InlineData(2, 0, new[] { "-smp", "cpus=2" })]
    [InlineData(1, 4, new[] { "-smp", "cpus=1,maxcpus=4" })]
    [InlineData(4, 255, new[] { "-smp", "cpus=4,maxcpus=255" })]
    public void Smp(int vcpus, int maxVcpus, string[] expected) =>
        Assert.Equal(expected, new SmpFragment(vcpus, maxVcpus).Args);

    [Theory]
    [InlineData("/run/vm/console.log", new[] { "-chardev", "file,id=console,path=/run/vm/console.log", "-serial", "chardev:console" })]
    [InlineData("/run/a,b/console.log", new[] { "-chardev", "file,id=console,path=/run/a,,b/console.log", "-serial", "chardev:console" })]
    public void Serial_console(string logPath, string[] expected) =>
        Assert.Equal(expected, new SerialConsoleFragment(logPath).Args);

    [Theory]
    [InlineData(3u, new[] { "-device", "vhost-vsock-pci,id=vsock0,guest-cid=3" })]
    [InlineData(2147418115u, new[] { "-device", "vhost-vsock-pci,id=vsock0,guest-cid=2147418115" })]
    public void Vsock(uint cid, string[] expected) =>
        Assert.Equal(expected, new VsockFragment(cid).Args);

    [Theory]
    [InlineData("/run/vm/agent.sock", new[]
    {
        "-device", "virtio-serial-pci,id=serial0",
        "-chardev", "socket,id=agent,path=/run/vm/agent.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=agent.0",
    })]
    [InlineData("/run/a,b/agent.sock", new[]
    {
        "-device", "virtio-serial-pci,id=serial0",
        "-chardev", "socket,id=agent,path=/run/a,,b/agent.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=agent.0",
    })]
    public void Virtio_serial(string socketPath, string[] expected) =>
        Assert.Equal(expected, new VirtioSerialFragment(socketPath).Args);

    [Theory]
    [InlineData("/run/sb/shared", "csharpshare", new[]
    {
        "-fsdev", "local,id=fs0,path=/run/sb/shared,security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=csharpshare",
    })]
    [InlineData("/run/a,b", "t,ag", new[]
    {
        "-fsdev", "local,id=fs0,path=/run/a,,b,security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=t,,ag",
    })]
    public void NineP_share(string directory, string tag, string[] expected) =>
        Assert.Equal(expected, new NinePShareFragment(directory, tag).Args);

    [Theory]
    [InlineData(0, "tap0_cs", "02:42:0a:00:00:05", new[] { "-netdev", "tap,id=net0,ifname=tap0_cs,script=no,downscript=no", "-device", "virtio-net-pci,netdev=net0,mac=02:42:0a:00:00:05,romfile=" })]
    [InlineData(2, "t,x", "aa:bb:cc:dd:ee:ff", new[] { "-netdev", "tap,id=net2,ifname=t,,x,script=no,downscript=no", "-device", "virtio-net-pci,netdev=net2,mac=aa:bb:cc:dd:ee:ff,romfile=" })]
    public void Nic_on_a_named_tap(int index, string tap, string mac, string[] expected) =>
        Assert.Equal(expected, new NicFragment(index, new VmNic(tap, mac)).Args);

    [Theory]
    [InlineData("tap-name-too-long", "02:42:0a:00:00:05", "invalid tap name \"tap-name-too-long\"")]
    [InlineData("tap 0", "02:42:0a:00:00:05", "invalid tap name \"tap 0\"")]
    [InlineData("tap0", "02:42:0a:00:00", "invalid MAC address \"02:42:0a:00:00\"")]
    public void Nic_names_and_macs_are_checked(string tap, string mac, string message)
    {
        var spec = new VmSpec
        {
            SandboxId = "sb",
            WorkDirectory = "/run/vm",
            Config = new HypervisorConfig { KernelPath = "/k/vmlinuz" },
            Nics = [new VmNic(tap, mac)],
        };
        Assert.StartsWith(message, Assert.Throws<HypervisorException>(() => QemuCommandLine.ValidateSpec(spec)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("q35", AcceleratorKind.Kvm, new[] { "-machine", "q35,accel=kvm", "-cpu", "host" })]
    [InlineData("q35", AcceleratorKind.Tcg, new[] { "-machine", "q35,accel=tcg", "-cpu", "max,erms=off" })]
    [InlineData("pc-q35-7.2", AcceleratorKind.Tcg, new[] { "-machine", "pc-q35-7.2,accel=tcg", "-cpu", "max,erms=off" })]
    [InlineData("microvm", AcceleratorKind.Kvm, new[] { "-machine", "microvm,accel=kvm", "-cpu", "host" })]
    public void Machine_and_accelerator(string machine, AcceleratorKind accelerator, string[] expected) =>
        Assert.Equal(expected, new MachineFragment(machine, accelerator).Args);

    [Theory]
    [InlineData(AcceleratorKind.Tcg, 32, new[] { "-machine", "q35", "-accel", "tcg,tb-size=32", "-cpu", "max,erms=off" })]
    [InlineData(AcceleratorKind.Tcg, 1, new[] { "-machine", "q35", "-accel", "tcg,tb-size=1", "-cpu", "max,erms=off" })]
    [InlineData(AcceleratorKind.Tcg, 0, new[] { "-machine", "q35,accel=tcg", "-cpu", "max,erms=off" })]
    [InlineData(AcceleratorKind.Kvm, 32, new[] { "-machine", "q35,accel=kvm", "-cpu", "host" })]
    public void The_translation_cache_is_capped_under_tcg_only(AcceleratorKind accelerator, int tbSizeMiB, string[] expected) =>
        Assert.Equal(expected, new MachineFragment("q35", accelerator, tbSizeMiB).Args);

    [Fact]
    public void The_default_config_caps_the_translation_cache()
    {
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = new HypervisorConfig() };

        var args = QemuCommandLine.Args(QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial), null));

        Assert.Equal($"tcg,tb-size={HypervisorConfig.DefaultTcgTranslationCacheMiB}", args[args.ToList().IndexOf("-accel") + 1]);
    }

    [Theory]
    [InlineData("/run/vm/qmp.sock", new[] { "-chardev", "socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control" })]
    [InlineData("/run/a,b/qmp.sock", new[] { "-chardev", "socket,id=qmp,path=/run/a,,b/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control" })]
    public void Qmp(string socketPath, string[] expected) =>
        Assert.Equal(expected, new QmpFragment(socketPath).Args);

    [Theory]
    [InlineData("sb1", new[] { "-name", "sb1", "-no-user-config", "-nodefaults", "-nographic", "-display", "none", "-no-reboot" })]
    [InlineData("a,b", new[] { "-name", "a,,b", "-no-user-config", "-nodefaults", "-nographic", "-display", "none", "-no-reboot" })]
    public void Base(string name, string[] expected) =>
        Assert.Equal(expected, new BaseFragment(name).Args);

    [Fact]
    public void Pid_file_and_rng() => Assert.Equal(
        ["-pidfile", "/run/vm/qemu.pid", "-object", "rng-random,filename=/dev/urandom,id=rng0", "-device", "virtio-rng-pci,rng=rng0"],
        QemuCommandLine.Args([new PidFileFragment("/run/vm/qemu.pid"), new RngFragment()]));

    [Fact]
    public void A_virtio_serial_vm_with_a_share_gets_every_fragment_in_order()
    {
        var config = new HypervisorConfig
        {
            KernelPath = "/k/vmlinuz",
            InitrdPath = "/k/initrd",
            MemoryMiB = 256,
            MaxMemoryMiB = 1024,
            MemorySlots = 2,
            VCpus = 1,
            MaxVCpus = 2,
            KernelParams = "x=1",
            Firmware = "/usr/share/qemu/qboot.rom",
        };
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = config, SharedDirectory = "/run/share", ShareMountTag = "tag" };

        var fragments = QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial), guestCid: null);

        Assert.Equal(
            [
                new BaseFragment("sb"),
                new SeccompSandboxFragment(),
                new MachineFragment("q35", AcceleratorKind.Tcg, HypervisorConfig.DefaultTcgTranslationCacheMiB),
                new MemoryFragment(256, 1024, 2),
                new SmpFragment(1, 2),
                new FirmwareFragment("/usr/share/qemu/qboot.rom"),
                new KernelFragment("/k/vmlinuz", "/k/initrd", "console=ttyS0 quiet panic=1 swiotlb=noforce memhp_default_state=online x=1"),
                new SerialConsoleFragment("/run/vm/console.log"),
                new QmpFragment("/run/vm/qmp.sock"),
                new VirtioSerialFragment("/run/vm/agent.sock"),
                new NinePShareFragment("/run/share", "tag"),
                new FreePageReportingFragment(),
                new RngFragment(),
                new PidFileFragment("/run/vm/qemu.pid"),
            ],
            fragments);
        var args = QemuCommandLine.Args(fragments);
        Assert.Equal(["-name", "sb", "-no-user-config", "-nodefaults"], args.Take(4));
    }

    [Fact]
    public void Seccomp_sandbox_denies_privileges_spawning_resource_control_and_obsolete_calls() =>
        Assert.Equal(["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"], new SeccompSandboxFragment().Args);

    [Theory]
    [InlineData(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial)]
    [InlineData(AcceleratorKind.Kvm, AgentTransportKind.Vsock)]
    public void Every_vm_runs_under_the_seccomp_sandbox_and_exports_only_its_own_share(AcceleratorKind accelerator, AgentTransportKind transport)
    {
        var spec = new VmSpec
        {
            SandboxId = "pod-a",
            WorkDirectory = "/run/containerd-shim-csharp/pod-a/vm",
            Config = new HypervisorConfig(),
            SharedDirectory = "/run/containerd-shim-csharp/pod-a/shared",
            ShareMountTag = "csharpshare",
        };

        var fragments = QemuCommandLine.Fragments(spec, new HostResolution(accelerator, transport), guestCid: 3);

        Assert.Single(fragments, f => f is SeccompSandboxFragment);
        var share = Assert.Single(fragments.OfType<NinePShareFragment>());
        Assert.Equal("/run/containerd-shim-csharp/pod-a/shared", share.Directory);
        var fsdevs = QemuCommandLine.Args(fragments).Where(a => a.StartsWith("local,", StringComparison.Ordinal)).ToList();
        Assert.Equal(["local,id=fs0,path=/run/containerd-shim-csharp/pod-a/shared,security_model=none,multidevs=remap"], fsdevs);
    }

    [Fact]
    public void A_vsock_vm_gets_vhost_vsock_and_no_virtio_serial_or_share()
    {
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = new HypervisorConfig() };

        var fragments = QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Kvm, AgentTransportKind.Vsock), guestCid: 77);

        Assert.Contains(new VsockFragment(77), fragments);
        Assert.Contains(new MachineFragment("q35", AcceleratorKind.Kvm, HypervisorConfig.DefaultTcgTranslationCacheMiB), fragments);
        Assert.DoesNotContain(fragments, f => f is VirtioSerialFragment or NinePShareFragment);
        Assert.Throws<ArgumentException>(() =>
            QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Kvm, AgentTransportKind.Vsock), guestCid: null));
    }

    [Fact]
    public void SharedFs_none_adds_no_9p_device()
    {
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = new HypervisorConfig { SharedFs = "none" } };

        var fragments = QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial), null);

        Assert.DoesNotContain(fragments, f => f is NinePShareFragment);
    }

    [Theory]
    [InlineData("", "/tmp/vm", null, "none", "sandbox id is empty")]
    [InlineData("sb", "relative/vm", null, "none", "work directory must be an absolute path: \"relative/vm\"")]
    [InlineData("sb", "/tmp/vm", "/tmp/share-that-does-not-exist-hvt", "virtio-9p", "shared directory not found: /tmp/share-that-does-not-exist-hvt")]
    [InlineData("sb", "/tmp/vm", "/tmp", "none", "a shared directory was requested (/tmp) but sharedFs is none (hypervisor config field sharedFs)")]
    public void ValidateSpec_rejects_bad_specs(string id, string workDir, string? shared, string sharedFs, string message)
    {
        var spec = new VmSpec { SandboxId = id, WorkDirectory = workDir, SharedDirectory = shared, Config = new HypervisorConfig { SharedFs = sharedFs } };

        var e = Assert.ThrowsAny<HypervisorException>(() => QemuCommandLine.ValidateSpec(spec));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void ValidateSpec_rejects_a_work_directory_too_long_for_unix_sockets()
    {
        var dir = "/" + new string('d', 100);
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = dir, Config = new HypervisorConfig() };

        var e = Assert.Throws<HypervisorException>(() => QemuCommandLine.ValidateSpec(spec));
        Assert.Equal($"work directory too long for unix sockets: {dir}/qmp.sock is 110 bytes, the limit is 107", e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a,b")]
    [InlineData("has space")]
    [InlineData("0123456789012345678901234567890123")]
    public void ValidateSpec_rejects_bad_9p_mount_tags(string tag)
    {
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/tmp/vm", SharedDirectory = "/tmp", ShareMountTag = tag, Config = new HypervisorConfig() };

        var e = Assert.Throws<HypervisorException>(() => QemuCommandLine.ValidateSpec(spec));
        Assert.StartsWith($"invalid share mount tag \"{tag}\"", e.Message, StringComparison.Ordinal);
    }
}
