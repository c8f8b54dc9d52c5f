using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;

namespace ShimV2.Hypervisor.Tests;

/// <summary>Real QEMU (TCG is enough) booting the host's Debian kernel with the tiny initramfs of <see cref="GuestImage"/>.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
[Collection(QemuCollection.Name)]
public sealed class QemuVmTests : IDisposable
{
    /// <summary>Bounds a guest boot under TCG on a busy 2-core machine (it takes a few seconds).</summary>
    private static readonly TimeSpan GuestTimeout = TimeSpan.FromSeconds(90);

    /// <summary>QEMU failing at start-up must be reported within this.</summary>
    private static readonly TimeSpan FailFast = TimeSpan.FromSeconds(10);

    private readonly ITestOutputHelper output;
    private readonly ListLoggerFactory logs;
    private readonly TestDirectory dir = new("vm");

    public QemuVmTests(ITestOutputHelper output)
    {
        this.output = output;
        logs = new ListLoggerFactory(output);
    }

    public void Dispose() => dir.Dispose();

    [QemuFact]
    public async Task Boots_the_real_kernel_reaches_the_guest_and_stops_without_leftovers()
    {
        var image = await GuestImage.GetAsync();
        var share = Directory.CreateDirectory(dir.Combine("share")).FullName;
        var spec = Spec(image, sharedDirectory: share);

        var vm = await QemuVm.StartAsync(spec, logs, CancellationToken.None);
        var pid = vm.Pid;
        try
        {
            Assert.Equal(VmState.Running, vm.State);
            Assert.True(pid > 0);
            Assert.Equal(AgentTransportKind.VirtioSerial, vm.AgentTransport);
            Assert.Equal(new QmpStatusInfo(true, "running"), await vm.Qmp.ExecuteAsync(new QueryStatus(), CancellationToken.None));
            Assert.Equal(7, vm.Qmp.Greeting.Version.Qemu.Major);
            Assert.Equal(PrivateDirectory.Mode, File.GetUnixFileMode(spec.WorkDirectory));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(vm.Paths.QmpSocket));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(vm.Paths.AgentSocket));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(vm.ConsoleLogPath));

            // The guest's /init answers on the virtio-serial port agent.0 once it is up.
            using var guest = new CancellationTokenSource(GuestTimeout);
            await using var channel = await vm.ConnectAgentAsync(guest.Token);
            using var reader = new StreamReader(channel, Encoding.UTF8, false, 256, leaveOpen: true);
            Assert.Equal($"{GuestImage.HelloPrefix} {image.KernelVersion}", await reader.ReadLineAsync(guest.Token));
            await channel.WriteAsync("ping over virtio-serial\n"u8.ToArray(), guest.Token);
            Assert.Equal("ping over virtio-serial", await reader.ReadLineAsync(guest.Token));

            await Eventually.TrueAsync(
                () => ReadShared(vm.ConsoleLogPath).Contains($"{GuestImage.ReadyMarker} {image.KernelVersion}", StringComparison.Ordinal),
                GuestTimeout,
                () => $"console.log lacks {GuestImage.ReadyMarker}: {vm.ConsoleTail(5)}");
            Assert.DoesNotContain("GUEST-ERROR", ReadShared(vm.ConsoleLogPath), StringComparison.Ordinal);
            Assert.Equal($"share {image.KernelVersion}\n", await File.ReadAllTextAsync(Path.Combine(share, GuestImage.ShareFile)));
        }
        finally
        {
            await vm.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }

        Assert.True(vm.Exited.IsCompleted);
        Assert.Equal(VmState.Stopped, vm.State);
        Assert.Equal("host-qmp-quit", vm.ExitReason);
        Assert.False(HostProcesses.Exists(pid), $"qemu pid {pid} is still in the process table");
        Assert.Empty(HostProcesses.WithCommandLineContaining(spec.WorkDirectory));
        Assert.False(File.Exists(vm.Paths.QmpSocket), "qmp.sock left behind");
        Assert.False(File.Exists(vm.Paths.AgentSocket), "agent.sock left behind");
        Assert.False(File.Exists(vm.Paths.PidFile), "qemu.pid left behind");
        Assert.True(File.Exists(vm.ConsoleLogPath), "console.log is kept for post-mortems");

        // Stopping again is a no-op.
        await vm.StopAsync(TimeSpan.FromSeconds(1), CancellationToken.None);
        await vm.DisposeAsync();
    }

    [QemuFact]
    public async Task Pause_and_resume_are_reported_by_query_status_and_events()
    {
        var image = await GuestImage.GetAsync();
        await using var vm = await QemuVm.StartAsync(Spec(image), logs, CancellationToken.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        await vm.PauseAsync(timeout.Token);
        Assert.Equal(VmState.Paused, vm.State);
        Assert.Equal(new QmpStatusInfo(false, "paused"), await vm.Qmp.ExecuteAsync(new QueryStatus(), timeout.Token));
        Assert.Equal(QmpEventNames.Stop, (await vm.Qmp.Events.ReadAsync(timeout.Token)).Name);
        await vm.PauseAsync(timeout.Token);

        await vm.ResumeAsync(timeout.Token);
        Assert.Equal(VmState.Running, vm.State);
        Assert.Equal(new QmpStatusInfo(true, "running"), await vm.Qmp.ExecuteAsync(new QueryStatus(), timeout.Token));
        Assert.Equal(QmpEventNames.Resume, (await vm.Qmp.Events.ReadAsync(timeout.Token)).Name);
        await vm.ResumeAsync(timeout.Token);

        await vm.StopAsync(TimeSpan.FromSeconds(5), timeout.Token);
        var e = await Assert.ThrowsAsync<InvalidVmStateException>(() => vm.PauseAsync(timeout.Token));
        Assert.Equal($"cannot pause vm {vm.SandboxId}: it is Stopped", e.Message);
        e = await Assert.ThrowsAsync<InvalidVmStateException>(() => vm.ResumeAsync(timeout.Token));
        Assert.Equal($"cannot resume vm {vm.SandboxId}: it is Stopped", e.Message);
        e = await Assert.ThrowsAsync<InvalidVmStateException>(() => vm.HotplugVcpusAsync(1, timeout.Token));
        Assert.Equal($"cannot add 1 vCPU(s) to vm {vm.SandboxId}: it is Stopped", e.Message);
        Assert.Equal(VmState.Stopped, vm.State);
    }

    [QemuFact]
    public async Task Qemu_dying_at_start_up_on_a_bad_machine_type_is_a_quick_clear_error()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image, config => config.MachineType = "no-such-machine");

        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAnyAsync<HypervisorException>(() => QemuVm.StartAsync(spec, logs, CancellationToken.None));

        Assert.True(clock.Elapsed < FailFast, $"took {clock.Elapsed}");
        Assert.Equal("qemu exited during boot (exit code 1): qemu-system-x86_64: unsupported machine type", e.Message);
        AssertNoLeftovers(spec);
    }

    [QemuFact]
    public async Task Qemu_dying_at_start_up_on_a_file_that_is_not_a_kernel_is_a_quick_clear_error()
    {
        var image = await GuestImage.GetAsync();
        var notAKernel = dir.File("vmlinuz-broken", "this is not a kernel\n");
        var spec = Spec(image, config =>
        {
            config.KernelPath = notAKernel;
            config.InitrdPath = "";
        });

        var clock = Stopwatch.StartNew();
        var e = await Assert.ThrowsAnyAsync<HypervisorException>(() => QemuVm.StartAsync(spec, logs, CancellationToken.None));

        Assert.True(clock.Elapsed < FailFast, $"took {clock.Elapsed}");
        Assert.Equal("qemu exited during boot (exit code 1): qemu: invalid kernel header", e.Message);
        AssertNoLeftovers(spec);
    }

    [QemuFact]
    public async Task A_missing_initrd_is_a_config_error_before_qemu_starts()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image, config => config.InitrdPath = dir.Combine("no-initrd.img"));

        var e = await Assert.ThrowsAsync<HypervisorConfigException>(() => QemuVm.StartAsync(spec, logs, CancellationToken.None));

        Assert.Equal($"initrd not found: {dir.Combine("no-initrd.img")} (hypervisor config field initrdPath)", e.Message);
        Assert.False(File.Exists(Path.Combine(spec.WorkDirectory, "console.log")), "qemu must not have been started");
    }

    [QemuFact]
    public async Task A_guest_that_panics_after_start_ends_the_vm_as_failed_with_the_console_tail()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image, config => config.KernelParams = "rdinit=/no-such-init");

        await using var vm = await QemuVm.StartAsync(spec, logs, CancellationToken.None);
        await vm.Exited.WaitAsync(GuestTimeout);

        Assert.Equal(VmState.Failed, vm.State);
        // The panic line read from the console, then QEMU's own reason (-no-reboot: the reset ends it).
        Assert.StartsWith("guest kernel panic: Kernel panic - not syncing: ", vm.ExitReason, StringComparison.Ordinal);
        Assert.EndsWith(" (guest-reset)", vm.ExitReason, StringComparison.Ordinal);
        var e = await Assert.ThrowsAsync<HypervisorException>(() => vm.ConnectAgentAsync(CancellationToken.None));
        Assert.StartsWith($"vm {vm.SandboxId} is not running ({vm.ExitReason}): cannot connect to the guest channel; console: ", e.Message, StringComparison.Ordinal);
        Assert.Contains("Kernel panic - not syncing: ", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("\u001b", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [QemuFact]
    public async Task Qemu_killed_from_outside_completes_Exited_and_is_reaped()
    {
        var image = await GuestImage.GetAsync();
        await using var vm = await QemuVm.StartAsync(Spec(image), logs, CancellationToken.None);
        var pid = vm.Pid;

        using (var qemu = Process.GetProcessById(pid))
        {
            qemu.Kill();
        }

        await vm.Exited.WaitAsync(FailFast);
        Assert.Equal(VmState.Failed, vm.State);
        Assert.Equal(137, vm.ExitCode);
        Assert.Equal("killed by signal 9", vm.ExitReason);
        Assert.False(HostProcesses.Exists(pid), $"qemu pid {pid} was not reaped");
        await vm.StopAsync(TimeSpan.FromSeconds(1), CancellationToken.None);
        Assert.False(File.Exists(vm.Paths.QmpSocket), "qmp.sock left behind");
    }

    [QemuFact]
    public async Task Dispose_without_stop_ends_qemu()
    {
        var image = await GuestImage.GetAsync();
        var vm = await QemuVm.StartAsync(Spec(image), logs, CancellationToken.None);
        var pid = vm.Pid;

        await vm.DisposeAsync();

        Assert.True(vm.Exited.IsCompleted);
        Assert.False(HostProcesses.Exists(pid), $"qemu pid {pid} is still in the process table");
    }

    [QemuFact]
    public async Task Vcpus_and_memory_are_hot_plugged_up_to_the_configured_maximum()
    {
        var image = await GuestImage.GetAsync();
        var spec = Spec(image, config =>
        {
            config.VCpus = 1;
            config.MaxVCpus = 2;
            config.MemoryMiB = 256;
            config.MaxMemoryMiB = 512;
            config.MemorySlots = 2;
        });
        await using var vm = await QemuVm.StartAsync(spec, logs, CancellationToken.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var ct = timeout.Token;

        Assert.Contains("maxcpus=2", string.Join(' ', vm.CommandLine), StringComparison.Ordinal);
        Assert.Single(await vm.Qmp.ExecuteAsync(new QueryCpusFast(), ct));

        var cpus = await vm.HotplugVcpusAsync(1, ct);
        Assert.Equal(["vcpu1"], cpus.AddedDeviceIds);
        Assert.Equal(2, cpus.Vcpus);
        Assert.All(await vm.Qmp.ExecuteAsync(new QueryHotpluggableCpus(), ct), slot => Assert.NotNull(slot.QomPath));
        var noCpu = await Assert.ThrowsAsync<HypervisorException>(() => vm.HotplugVcpusAsync(1, ct));
        Assert.Equal($"cannot add 1 vCPU(s) to vm {vm.SandboxId}: 0 of maxVCpus 2 left", noCpu.Message);

        var memory = await vm.HotplugMemoryAsync(100, ct);
        Assert.Equal(new MemoryHotplugResult("dimm2", 128, 384), memory);
        var dimm = Assert.Single(await vm.Qmp.ExecuteAsync(new QueryMemoryDevices(), ct));
        Assert.Equal("dimm", dimm.Type);
        Assert.Equal("dimm2", dimm.Data!.Id);
        Assert.Equal(128L << 20, dimm.Data.Size);
        Assert.True(dimm.Data.Hotplugged);
        Assert.Equal(new QmpMemorySizeSummary(256L << 20, 128L << 20), await vm.Qmp.ExecuteAsync(new QueryMemorySizeSummary(), ct));

        var tooMuch = await Assert.ThrowsAsync<HypervisorException>(() => vm.HotplugMemoryAsync(200, ct));
        Assert.Equal($"cannot add 256 MiB to vm {vm.SandboxId}: 128 MiB of maxMemoryMiB 512 left", tooMuch.Message);
        Assert.Equal(new MemoryHotplugResult("dimm3", 128, 512), await vm.HotplugMemoryAsync(128, ct));
    }

    /// <summary>sharedFs virtio-fs with real QEMU: its virtiofsd runs while the VM does (QEMU connected to it at
    /// start), a hot-plugged DIMM is a shared memfd like the boot RAM, and stop leaves no virtiofsd and no files.</summary>
    [QemuFact]
    public async Task A_virtio_fs_vm_runs_with_its_virtiofsd_hot_plugs_shared_memory_and_stops_both()
    {
        var image = await GuestImage.GetAsync();
        var shared = dir.Combine("shared");
        Directory.CreateDirectory(shared);
        var spec = Spec(image, config =>
        {
            config.SharedFs = "virtio-fs";
            config.MaxMemoryMiB = 384;
            config.MemorySlots = 1;
        }, sharedDirectory: shared);

        await using (var vm = await QemuVm.StartAsync(spec, logs, CancellationToken.None))
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.True(vm.UsesVirtioFs);
            Assert.NotEqual(0, vm.VirtiofsdPid);
            Assert.Contains($"--socket-path={vm.Paths.VirtiofsSocket}", await File.ReadAllTextAsync($"/proc/{vm.VirtiofsdPid}/cmdline"), StringComparison.Ordinal);
            Assert.Equal(new MemoryHotplugResult("dimm1", 128, 384), await vm.HotplugMemoryAsync(128, timeout.Token));
            Assert.Equal(new QmpMemorySizeSummary(256L << 20, 128L << 20), await vm.Qmp.ExecuteAsync(new QueryMemorySizeSummary(), timeout.Token));
            await vm.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }

        AssertNoLeftovers(spec);
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(spec.WorkDirectory), f => !f.EndsWith("console.log", StringComparison.Ordinal));
    }

    [QemuFact]
    public async Task Memory_hotplug_needs_maxMemoryMiB_above_memoryMiB()
    {
        var image = await GuestImage.GetAsync();
        await using var vm = await QemuVm.StartAsync(Spec(image), logs, CancellationToken.None);

        var e = await Assert.ThrowsAsync<HypervisorException>(() => vm.HotplugMemoryAsync(128, CancellationToken.None));

        Assert.Equal($"cannot add memory to vm {vm.SandboxId}: memory hotplug is off (maxMemoryMiB 256 is not above memoryMiB 256)", e.Message);
    }

    [QemuFact]
    public async Task A_vsock_cid_another_vm_holds_is_retried_with_the_next_one()
    {
        var image = await GuestImage.GetAsync();
        var sandboxId = $"cid-{Guid.NewGuid():N}"[..16];
        var taken = VsockCidAllocator.Start(sandboxId);
        var attempts = dir.Combine("attempts.log");

        // Stands in for qemu on a host with vhost-vsock: refuses the taken cid the way vhost-vsock does, and runs
        // the real qemu otherwise, with the vsock device swapped for one that needs no /dev/vhost-vsock.
        var fakeQemu = dir.Script("fake-qemu", $$"""
            for a do
              case "$a" in
                *guest-cid=*) echo "$a" >> {{attempts}} ;;
              esac
              case "$a" in
                *guest-cid={{taken}})
                  echo "qemu-system-x86_64: -device $a: vhost-vsock: unable to set guest cid: Address already in use" >&2
                  exit 1 ;;
              esac
            done
            for a do
              shift
              case "$a" in
                vhost-vsock-pci,*) set -- "$@" "virtio-rng-pci,id=vsock0" ;;
                *) set -- "$@" "$a" ;;
              esac
            done
            exec {{GuestImage.QemuPath}} "$@"
            """);
        var spec = Spec(image, config =>
        {
            config.QemuPath = fakeQemu;
            config.AgentTransport = "vsock";
        }, sandboxId: sandboxId);
        var probe = new FakeHostProbe { VhostVsockExists = true, CanProbeCids = false };

        await using var vm = await QemuVm.StartAsync(spec, logs, probe, CancellationToken.None);

        Assert.Equal(AgentTransportKind.Vsock, vm.AgentTransport);
        Assert.Equal(VsockCidAllocator.Next(taken), vm.GuestCid);
        Assert.Equal(VmState.Running, vm.State);
        Assert.Equal(
            [$"vhost-vsock-pci,id=vsock0,guest-cid={taken}", $"vhost-vsock-pci,id=vsock0,guest-cid={VsockCidAllocator.Next(taken)}"],
            await File.ReadAllLinesAsync(attempts));
        Assert.Contains(logs.Lines, l => l.Contains($"vsock cid {taken} is taken", StringComparison.Ordinal));
    }

    private VmSpec Spec(GuestImage image, Action<HypervisorConfig>? configure = null, string? sharedDirectory = null, string? sandboxId = null)
    {
        var config = new HypervisorConfig
        {
            QemuPath = GuestImage.QemuPath,
            KernelPath = image.KernelPath,
            InitrdPath = image.InitrdPath,
            MemoryMiB = 256,
            VCpus = 1,
            Accelerator = "auto",
            AgentTransport = "virtio-serial",
            SharedFs = "virtio-9p",
            BootTimeoutSeconds = 30,
        };
        configure?.Invoke(config);
        var id = sandboxId ?? $"hvt-{Guid.NewGuid():N}"[..16];
        output.WriteLine($"sandbox {id} in {dir.Path}");
        return new VmSpec
        {
            SandboxId = id,
            WorkDirectory = dir.Combine("w"),
            Config = config,
            SharedDirectory = sharedDirectory,
            ShareMountTag = GuestImage.ShareTag,
        };
    }

    private static void AssertNoLeftovers(VmSpec spec)
    {
        Assert.Empty(HostProcesses.WithCommandLineContaining(spec.WorkDirectory));
        Assert.False(File.Exists(Path.Combine(spec.WorkDirectory, "qmp.sock")), "qmp.sock left behind");
        Assert.False(File.Exists(Path.Combine(spec.WorkDirectory, "agent.sock")), "agent.sock left behind");
    }

    private static string ReadShared(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(file);
        return reader.ReadToEnd();
    }
}
