using System.Globalization;
using ShimV2.Hypervisor;

namespace ShimV2.Cli.Check;

/// <summary>The items of `check`, in order. Each says ok, warn (pods start, but know this) or fail (a pod cannot start).</summary>
internal static class HostChecks
{
    public const string TunDevice = "/dev/net/tun";

    /// <summary>Devices every VM uses (virtio-net-pci: every pod with a network).</summary>
    private static readonly string[] AlwaysNeeded = ["virtio-serial-pci", "virtserialport", "virtio-rng-pci", "virtio-net-pci"];

    public static async IAsyncEnumerable<CheckItem> RunAsync(LoadedConfig loaded, string containerdSocket, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var config = loaded.Config;
        yield return loaded.Error is null
            ? CheckItem.Ok("config", $"{loaded.Path} parses")
            : CheckItem.Fail("config", loaded.Error);

        var (qemuItem, devices) = await QemuAsync(config, ct);
        yield return qemuItem;
        var transport = Transport(config, out var transportItem);
        yield return Devices(config, devices, transport);
        yield return Kernel(config.KernelPath);
        yield return Readable("initrd", config.InitrdPath, required: false);
        yield return Accelerator(config);
        yield return transportItem;
        yield return Tun();
        yield return Cgroups();
        yield return SharedFs(config, devices);
        yield return await ContainerdAsync(containerdSocket, ct);
    }

    private static async Task<(CheckItem Item, IReadOnlySet<string>? Devices)> QemuAsync(HypervisorConfig config, CancellationToken ct)
    {
        if (!File.Exists(config.QemuPath))
        {
            return (CheckItem.Fail("qemu", $"qemu not found: {config.QemuPath} (apt-get install qemu-system-x86)"), null);
        }

        try
        {
            var version = await QemuInfo.VersionAsync(config.QemuPath, ct);
            return (CheckItem.Ok("qemu", $"{config.QemuPath}: {version}"), await QemuInfo.DevicesAsync(config.QemuPath, ct));
        }
        catch (CheckException e)
        {
            return (CheckItem.Fail("qemu", e.Message), null);
        }
    }

    private static CheckItem Devices(HypervisorConfig config, IReadOnlySet<string>? devices, AgentTransportKind? transport)
    {
        if (devices is null)
        {
            return CheckItem.Fail("devices", "unknown: qemu did not list its devices");
        }

        var needed = new List<string>(AlwaysNeeded);
        if (config.SharedFs == "virtio-9p")
        {
            needed.Add("virtio-9p-pci");
        }
        else if (config.SharedFs == "virtio-fs")
        {
            needed.Add("vhost-user-fs-pci");
        }

        if (transport == AgentTransportKind.Vsock)
        {
            needed.Add("vhost-vsock-pci");
        }

        if (config.EffectiveMaxMemoryMiB > config.MemoryMiB)
        {
            needed.Add("pc-dimm");
        }

        var missing = needed.Where(d => !devices.Contains(d)).ToList();
        return missing.Count == 0
            ? CheckItem.Ok("devices", string.Join(' ', needed))
            : CheckItem.Fail("devices", $"qemu lacks {string.Join(", ", missing)} (has {string.Join(' ', needed.Except(missing))})");
    }

    /// <summary>The kernel is readable, and which one it is when its guest image's manifest says.</summary>
    private static CheckItem Kernel(string path)
    {
        var item = Readable("kernel", path, required: true);
        return item.Status == CheckStatus.Ok && GuestImageManifest.DescribeKernel(path) is { } kernel
            ? CheckItem.Ok(item.Name, $"{item.Detail}: {kernel}")
            : item;
    }

    private static CheckItem Readable(string name, string path, bool required)
    {
        if (string.IsNullOrEmpty(path))
        {
            return required ? CheckItem.Fail(name, $"{name}Path is empty") : CheckItem.Ok(name, "none (the kernel boots without one)");
        }

        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read);
            return CheckItem.Ok(name, string.Create(CultureInfo.InvariantCulture, $"{path} ({file.Length / 1048576.0:0.0} MiB)"));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return CheckItem.Fail(name, $"{name} not found: {path}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return CheckItem.Fail(name, $"cannot read {name} {path}: {e.Message}");
        }
    }

    private static CheckItem Accelerator(HypervisorConfig config)
    {
        var outlook = HostOutlook.Accelerator(config);
        var text = $"{outlook.Accelerator?.ToString().ToLowerInvariant() ?? "none"}: {outlook.Reason}";
        if (outlook.Accelerator is null)
        {
            return CheckItem.Fail("accelerator", text);
        }

        return outlook.FellBackToTcg
            ? CheckItem.Warn("accelerator", $"{text} (pods start, slower than under KVM)")
            : CheckItem.Ok("accelerator", text);
    }

    private static AgentTransportKind? Transport(HypervisorConfig config, out CheckItem item)
    {
        try
        {
            var transport = HostOutlook.Transport(config);
            item = CheckItem.Ok("vhost-vsock", transport == AgentTransportKind.Vsock
                ? $"{HostOutlook.VhostVsockDevice} present: agent over vsock"
                : File.Exists(HostOutlook.VhostVsockDevice)
                    ? "agentTransport is virtio-serial: agent over virtio-serial"
                    : $"no {HostOutlook.VhostVsockDevice}: agent over virtio-serial");
            return transport;
        }
        catch (HypervisorConfigException e)
        {
            item = CheckItem.Fail("vhost-vsock", e.Message);
            return null;
        }
    }

    private static CheckItem Tun() => File.Exists(TunDevice)
        ? CheckItem.Ok("tun", $"{TunDevice} present: pod networks can reach the VM")
        : CheckItem.Warn("tun", $"no {TunDevice}: pods with a network namespace cannot start (modprobe tun)");

    private static CheckItem Cgroups()
    {
        try
        {
            if (File.Exists("/sys/fs/cgroup/cgroup.controllers"))
            {
                var controllers = File.ReadAllText("/sys/fs/cgroup/cgroup.controllers").Trim();
                return CheckItem.Ok("cgroups", $"v2 (unified), controllers: {(controllers.Length == 0 ? "none" : controllers)}; {PodCgroupDrivers()}");
            }

            if (File.Exists("/proc/cgroups"))
            {
                // subsys_name hierarchy num_cgroups enabled
                var enabled = File.ReadLines("/proc/cgroups")
                    .Where(l => !l.StartsWith('#'))
                    .Select(l => l.Split('\t', ' ', StringSplitOptions.RemoveEmptyEntries))
                    .Where(f => f.Length >= 4 && f[3] == "1")
                    .Select(f => f[0]);
                return CheckItem.Ok("cgroups", $"v1, controllers: {string.Join(' ', enabled)}; {PodCgroupDrivers()}");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return CheckItem.Warn("cgroups", $"cannot read the cgroup controllers: {e.Message}");
        }

        return CheckItem.Warn("cgroups", "no cgroup file system found at /sys/fs/cgroup");
    }

    /// <summary>Which linux.cgroupsPath forms a pod's VM can be placed by (README: Host cgroups).</summary>
    private static string PodCgroupDrivers() => ShimV2.Shim.Cgroups.SystemdDbusManager.SystemdRunning
        ? "pod cgroups: cgroupfs and systemd drivers"
        : "pod cgroups: cgroupfs driver (no systemd: a systemd cgroupsPath fails)";

    private static CheckItem SharedFs(HypervisorConfig config, IReadOnlySet<string>? devices)
    {
        var ninep = devices?.Contains("virtio-9p-pci") == true;
        var (virtiofsOk, virtiofs) = VirtioFs(config, devices);
        var ninepText = $"virtio-9p {(ninep ? "available" : "not available (qemu has no virtio-9p-pci)")}";
        return config.SharedFs switch
        {
            "none" => CheckItem.Ok("shared-fs", $"sharedFs is none; {ninepText}; virtio-fs {(virtiofsOk ? virtiofs : "not available")}"),
            "virtio-fs" => virtiofsOk
                ? CheckItem.Ok("shared-fs", $"virtio-fs (in use): {virtiofs}; {ninepText}")
                : CheckItem.Fail("shared-fs", virtiofs),
            _ => ninep
                ? CheckItem.Ok("shared-fs", $"virtio-9p (in use); virtio-fs {(virtiofsOk ? virtiofs : "not available")}")
                : CheckItem.Fail("shared-fs", $"sharedFs is virtio-9p but qemu has no virtio-9p-pci; virtio-fs {(virtiofsOk ? virtiofs : "not available")}"),
        };
    }

    /// <summary>Whether virtio-fs can serve pods here: a virtiofsd that runs and QEMU's vhost-user-fs-pci.</summary>
    private static (bool Ok, string Text) VirtioFs(HypervisorConfig config, IReadOnlySet<string>? devices)
    {
        ShimV2.Hypervisor.Virtiofs.VirtiofsdBinary binary;
        try
        {
            binary = ShimV2.Hypervisor.Virtiofs.VirtiofsdLocator.Resolve(config);
        }
        catch (HypervisorConfigException e)
        {
            return (false, e.Message);
        }

        return devices?.Contains("vhost-user-fs-pci") == true
            ? (true, $"available (virtiofsd {binary.Path}, {binary.Flavor} flavor)")
            : (false, $"sharedFs is virtio-fs but qemu has no vhost-user-fs-pci (virtiofsd {binary.Path} is there)");
    }

    private static async Task<CheckItem> ContainerdAsync(string socket, CancellationToken ct)
    {
        if (!File.Exists(socket))
        {
            return CheckItem.Warn("containerd", $"no containerd answers on {socket}: the socket does not exist");
        }

        try
        {
            var version = await ContainerdVersion.QueryAsync(socket, TimeSpan.FromSeconds(5), ct);
            return CheckItem.Ok("containerd", $"{version.Version} (revision {version.Revision}) on {socket}");
        }
        catch (IOException e)
        {
            return CheckItem.Warn("containerd", $"no containerd answers on {socket}: {e.Message}");
        }
    }
}
