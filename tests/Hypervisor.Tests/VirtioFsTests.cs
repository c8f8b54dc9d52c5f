using System.Diagnostics;
using ShimV2.Hypervisor.Qemu;
using ShimV2.Hypervisor.Virtiofs;

namespace ShimV2.Hypervisor.Tests;

/// <summary>sharedFs virtio-fs: its QEMU fragments, virtiofsd's command line per flavor, the config checks, and how
/// `delete` finds and stops a dead shim's virtiofsd.</summary>
public sealed class VirtioFsTests : IDisposable
{
    private const string VmDir = "/run/containerd-shim-csharp/pod-a/vm";
    private const string Socket = VmDir + "/virtiofs.sock";

    private readonly string _temp = Directory.CreateTempSubdirectory("virtiofs-tests-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Theory]
    [InlineData(512, new[] { "-object", "memory-backend-memfd,id=ram0,size=512M,share=on", "-machine", "memory-backend=ram0" })]
    [InlineData(64, new[] { "-object", "memory-backend-memfd,id=ram0,size=64M,share=on", "-machine", "memory-backend=ram0" })]
    public void Shared_memory(int memoryMiB, string[] expected) =>
        Assert.Equal(expected, new SharedMemoryFragment(memoryMiB).Args);

    [Theory]
    [InlineData(Socket, "csharpshare", new[]
    {
        "-chardev", "socket,id=virtiofs0,path=" + Socket,
        "-device", "vhost-user-fs-pci,chardev=virtiofs0,tag=csharpshare,queue-size=1024",
    })]
    [InlineData("/run/a,b/virtiofs.sock", "t,ag", new[]
    {
        "-chardev", "socket,id=virtiofs0,path=/run/a,,b/virtiofs.sock",
        "-device", "vhost-user-fs-pci,chardev=virtiofs0,tag=t,,ag,queue-size=1024",
    })]
    public void Virtio_fs_share(string socket, string tag, string[] expected) =>
        Assert.Equal(expected, new VirtioFsShareFragment(socket, tag).Args);

    [Theory]
    [InlineData(512, 512, false)]
    [InlineData(512, 2048, true)]
    public void A_virtio_fs_vm_gets_shared_memory_and_the_vhost_user_device_and_no_9p(int memory, int maxMemory, bool hotplug)
    {
        var spec = new VmSpec
        {
            SandboxId = "pod-a",
            WorkDirectory = VmDir,
            Config = new HypervisorConfig { SharedFs = "virtio-fs", MemoryMiB = memory, MaxMemoryMiB = maxMemory },
            SharedDirectory = "/run/containerd-shim-csharp/pod-a/shared",
        };

        var fragments = QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial), null).ToList();

        var memoryAt = fragments.FindIndex(f => f is MemoryFragment);
        Assert.Equal(new SharedMemoryFragment(memory), fragments[memoryAt + 1]);
        Assert.Equal(hotplug, ((MemoryFragment)fragments[memoryAt]).Args[1].Contains("slots=", StringComparison.Ordinal));
        Assert.Contains(new VirtioFsShareFragment(Socket, "csharpshare"), fragments);
        Assert.DoesNotContain(fragments, f => f is NinePShareFragment);
    }

    [Theory]
    [InlineData("virtio-9p", "/run/sb/shared")]
    [InlineData("virtio-fs", null)]
    [InlineData("none", null)]
    public void Without_virtio_fs_and_a_share_guest_memory_stays_private(string sharedFs, string? shared)
    {
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = new HypervisorConfig { SharedFs = sharedFs }, SharedDirectory = shared };

        var fragments = QemuCommandLine.Fragments(spec, new HostResolution(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial), null);

        Assert.DoesNotContain(fragments, f => f is SharedMemoryFragment or VirtioFsShareFragment);
    }

    [Fact]
    public void A_work_directory_too_long_for_the_virtiofsd_socket_is_refused_with_virtio_fs_only()
    {
        // qmp.sock and agent.sock fit; virtiofs.sock (3 bytes longer) does not.
        var dir = "/" + new string('d', 107 - 1 - "/virtiofs.sock".Length + 1);
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = dir, Config = new HypervisorConfig { SharedFs = "virtio-fs" } };

        var e = Assert.Throws<HypervisorException>(() => QemuCommandLine.ValidateSpec(spec));
        Assert.Equal($"work directory too long for unix sockets: {dir}/virtiofs.sock is 108 bytes, the limit is 107", e.Message);
        QemuCommandLine.ValidateSpec(new VmSpec { SandboxId = "sb", WorkDirectory = dir, Config = new HypervisorConfig() });
    }

    public static TheoryData<VirtiofsdFlavor, string, bool, string[]> VirtiofsdCases => new()
    {
        {
            VirtiofsdFlavor.Qemu, "/run/pod/shared", false,
            [
                "--socket-path=" + Socket, "-o", "source=/run/pod/shared", "-o", "sandbox=namespace", "-o", "cache=auto",
                "-o", "announce_submounts", "-o", "xattr", "-o", "log_level=warn",
            ]
        },
        {
            VirtiofsdFlavor.Qemu, "/run/a,b\\c", true,
            [
                "--socket-path=" + Socket, "-o", "source=/run/a\\,b\\\\c", "-o", "sandbox=namespace", "-o", "cache=auto",
                "-o", "announce_submounts", "-o", "xattr", "-o", "log_level=info",
            ]
        },
        {
            VirtiofsdFlavor.Rust, "/run/a,b", false,
            [
                "--socket-path", Socket, "--shared-dir", "/run/a,b", "--sandbox", "namespace", "--seccomp", "kill",
                "--cache", "auto", "--announce-submounts", "--xattr", "--log-level", "warn",
            ]
        },
    };

    [Theory]
    [MemberData(nameof(VirtiofsdCases))]
    public void Virtiofsd_arguments(VirtiofsdFlavor flavor, string shared, bool debug, string[] expected) =>
        Assert.Equal(expected, new VirtiofsdArguments(flavor, Socket, shared, debug).Args);

    [Theory]
    [InlineData("virtiofsd version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", VirtiofsdFlavor.Qemu)]
    [InlineData("virtiofsd 1.13.2", VirtiofsdFlavor.Rust)]
    [InlineData("virtiofsd backend 1.14.0", VirtiofsdFlavor.Rust)]
    public void The_flavor_comes_from_the_version_line(string version, VirtiofsdFlavor expected) =>
        Assert.Equal(expected, VirtiofsdLocator.FlavorOf(version));

    [Theory]
    [InlineData(new[] { "/usr/lib/qemu/virtiofsd", "--socket-path=" + Socket, "-o", "source=/x" }, true)]
    [InlineData(new[] { "/usr/libexec/virtiofsd", "--socket-path", Socket, "--shared-dir", "/x" }, true)]
    [InlineData(new[] { "/usr/libexec/virtiofsd", "--socket-path", "/run/containerd-shim-csharp/pod-b/vm/virtiofs.sock" }, false)]
    [InlineData(new[] { "/usr/libexec/virtiofsd", "--socket-path" }, false)]
    [InlineData(new[] { "/bin/sleep", Socket }, false)]
    public void A_process_serves_this_socket_only_when_its_socket_option_names_it(string[] commandLine, bool expected) =>
        Assert.Equal(expected, VirtiofsdArguments.NamesSocket(commandLine, Socket));

    [Fact]
    public void The_C_virtiofsd_lock_file_is_named_after_the_socket() =>
        Assert.Equal("/var/run/virtiofsd/.run.containerd-shim-csharp.pod-a.vm.virtiofs.sock.pid", VirtiofsdArguments.QemuFlavorLockFile(Socket));

    [Fact]
    public void Config_accepts_virtio_fs_and_refuses_a_relative_virtiofsd_path()
    {
        HypervisorConfigValidator.Validate(new HypervisorConfig { SharedFs = "virtio-fs" });

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigValidator.Validate(new HypervisorConfig { SharedFs = "virtio-fs", VirtiofsdPath = "virtiofsd" }));
        Assert.Equal("virtiofsdPath must be empty or an absolute path, got \"virtiofsd\" (hypervisor config field virtiofsdPath)", e.Message);
        var unknown = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigValidator.Validate(new HypervisorConfig { SharedFs = "virtiofs" }));
        Assert.Equal("unknown sharedFs \"virtiofs\", expected one of: virtio-9p, virtio-fs, none (hypervisor config field sharedFs)", unknown.Message);
    }

    [Fact]
    public void A_missing_virtiofsd_is_a_clear_config_error()
    {
        var missing = Path.Combine(_temp, "no-virtiofsd");

        var e = Assert.Throws<HypervisorConfigException>(() => VirtiofsdLocator.Resolve(new HypervisorConfig { SharedFs = "virtio-fs", VirtiofsdPath = missing }));

        Assert.Equal(
            $"sharedFs is virtio-fs but virtiofsd was not found (looked for {missing}; {VirtiofsdLocator.InstallHint}) (hypervisor config field virtiofsdPath)",
            e.Message);
    }

    [Theory]
    [InlineData("#!/bin/sh\necho 'virtiofsd version 7.2.22 (Debian)'\n", true, VirtiofsdFlavor.Qemu, null)]
    [InlineData("#!/bin/sh\necho 'virtiofsd 1.13.2'\n", true, VirtiofsdFlavor.Rust, null)]
    [InlineData("#!/bin/sh\necho \"virtiofsd: version 'GLIBC_2.39' not found\" >&2; exit 1\n", true, VirtiofsdFlavor.Rust,
        "virtiofsd {0} does not run here (exit code 1): virtiofsd: version 'GLIBC_2.39' not found (hypervisor config field virtiofsdPath)")]
    [InlineData("#!/bin/sh\necho 'virtiofsd 1.13.2'\n", false, VirtiofsdFlavor.Rust, "virtiofsd is not executable: {0} (hypervisor config field virtiofsdPath)")]
    public void A_configured_virtiofsd_is_run_once_to_learn_its_flavor(string script, bool executable, VirtiofsdFlavor flavor, string? error)
    {
        var path = Path.Combine(_temp, "virtiofsd");
        File.WriteAllText(path, script);
        File.SetUnixFileMode(path, executable ? (UnixFileMode)0b111_101_101 : (UnixFileMode)0b110_100_100);
        var config = new HypervisorConfig { SharedFs = "virtio-fs", VirtiofsdPath = path };

        if (error is null)
        {
            Assert.Equal(new VirtiofsdBinary(path, flavor), VirtiofsdLocator.Resolve(config));
        }
        else
        {
            var e = Assert.Throws<HypervisorConfigException>(() => VirtiofsdLocator.Resolve(config));
            Assert.Equal(string.Format(System.Globalization.CultureInfo.InvariantCulture, error, path), e.Message);
        }
    }

    [Fact]
    public void Delete_stops_the_recorded_virtiofsd_and_removes_its_files()
    {
        var vm = Directory.CreateDirectory(Path.Combine(_temp, "vm")).FullName;
        var socket = Path.Combine(vm, "virtiofs.sock");
        File.WriteAllText(socket, "");

        // A stand-in serving this socket: the shell's own command line carries the option; `read` keeps it a single process.
        using var child = Start("/bin/sh", "-c", "echo ready; read x", "sh", "--socket-path=" + socket);
        Assert.Equal("ready", child.StandardOutput.ReadLine());
        QemuIdentity.Capture(child.Id)!.Write(Path.Combine(vm, VirtiofsDaemon.IdentityFileName));

        Assert.True(VirtiofsOrphans.Stop(vm, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10)));

        Assert.True(child.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.Empty(Directory.EnumerateFileSystemEntries(vm));
    }

    [Fact]
    public void Delete_leaves_a_stranger_with_the_recorded_pid_alone()
    {
        var vm = Directory.CreateDirectory(Path.Combine(_temp, "vm")).FullName;
        using var stranger = Start("/bin/sh", "-c", "echo ready; read x", "sh", "--socket-path=/elsewhere/virtiofs.sock");
        try
        {
            Assert.Equal("ready", stranger.StandardOutput.ReadLine());
            var identity = QemuIdentity.Capture(stranger.Id)!;
            identity.Write(Path.Combine(vm, VirtiofsDaemon.IdentityFileName));

            Assert.False(VirtiofsDaemon.IsOrphan(identity, Path.Combine(vm, "virtiofs.sock")));
            Assert.False(VirtiofsDaemon.IsOrphan(identity with { StartTime = identity.StartTime + 1 }, "/elsewhere/virtiofs.sock"));
            Assert.True(VirtiofsDaemon.IsOrphan(identity, "/elsewhere/virtiofs.sock"));
            Assert.True(VirtiofsOrphans.Stop(vm, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)));
            Assert.False(stranger.HasExited);
        }
        finally
        {
            stranger.Kill();
            stranger.WaitForExit();
        }
    }

    [Fact]
    public void The_children_of_a_process_are_found_with_their_start_times()
    {
        using var parent = Start("/bin/sh", "-c", "sleep 1000 & echo $!; wait");
        try
        {
            var sleeper = int.Parse(parent.StandardOutput.ReadLine()!, System.Globalization.CultureInfo.InvariantCulture);

            var children = VirtiofsDaemon.ChildrenOf(parent.Id);

            Assert.Equal([(sleeper, ProcStat.Read(sleeper)!.Value.StartTime)], children);
            Assert.True(OrphanedQemu.Stop(sleeper, children[0].StartTime, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5)));
        }
        finally
        {
            parent.Kill(entireProcessTree: true);
            parent.WaitForExit();
        }
    }

    [Fact]
    public async Task The_daemon_is_ready_once_its_socket_exists_and_stop_reaps_it_and_removes_its_files()
    {
        var work = Directory.CreateDirectory(Path.Combine(_temp, "vm")).FullName;
        var socket = Path.Combine(work, "virtiofs.sock");
        var fake = FakeVirtiofsd("touch \"$sock\"; trap 'exit 0' TERM; while :; do sleep 0.1; done");

        var daemon = await VirtiofsDaemon.StartAsync(
            new VirtiofsdBinary(fake, VirtiofsdFlavor.Rust), new VirtiofsdArguments(VirtiofsdFlavor.Rust, socket, _temp), work, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None);
        var pid = daemon.Pid;
        Assert.True(File.Exists(Path.Combine(work, VirtiofsDaemon.IdentityFileName)));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));

        await daemon.StopAsync(TimeSpan.FromSeconds(5));

        Assert.True(daemon.Exited.IsCompleted);
        Assert.Null(ProcStat.Read(pid));
        Assert.Empty(Directory.EnumerateFileSystemEntries(work));
    }

    [Fact]
    public async Task A_daemon_that_exits_at_start_fails_with_its_last_words_and_leaves_nothing()
    {
        var work = Directory.CreateDirectory(Path.Combine(_temp, "vm")).FullName;
        var fake = FakeVirtiofsd("echo 'virtiofsd: cannot unshare: Operation not permitted' >&2; exit 1");

        var e = await Assert.ThrowsAsync<HypervisorException>(() => VirtiofsDaemon.StartAsync(
            new VirtiofsdBinary(fake, VirtiofsdFlavor.Rust), new VirtiofsdArguments(VirtiofsdFlavor.Rust, Path.Combine(work, "virtiofs.sock"), _temp), work,
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None));

        Assert.Equal("virtiofsd exited at start (exit code 1): virtiofsd: cannot unshare: Operation not permitted", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(work));
    }

    /// <summary>A stand-in virtiofsd: a shell script given the Rust flavor's arguments ($2 is the socket path).</summary>
    private string FakeVirtiofsd(string body)
    {
        var path = Path.Combine(_temp, "fake-virtiofsd");
        File.WriteAllText(path, $"#!/bin/sh\nsock=\"$2\"\n{body}\n");
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        return path;
    }

    private static Process Start(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        return Process.Start(info)!;
    }
}
