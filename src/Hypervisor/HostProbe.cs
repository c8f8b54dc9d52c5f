namespace ShimV2.Hypervisor;

/// <summary>What the host offers; an interface so resolution can be tested without the devices.</summary>
internal interface IHostProbe
{
    /// <summary>Whether /dev/kvm opens read-write; otherwise why not ("no /dev/kvm", "/dev/kvm: Permission denied").</summary>
    bool KvmUsable(out string reason);

    /// <summary>The KVM modules the host kernel has loaded.</summary>
    KvmModules LoadedKvmModules { get; }

    bool VhostVsockExists { get; }

    /// <summary>Whether no other VM holds <paramref name="cid"/>; null when it cannot be told (no vhost device access).</summary>
    bool? IsVsockCidFree(uint cid);
}

internal sealed class HostProbe : IHostProbe
{
    public const string KvmDevice = "/dev/kvm";
    public const string VhostVsockDevice = "/dev/vhost-vsock";

    public static readonly HostProbe Instance = new();

    public bool VhostVsockExists => File.Exists(VhostVsockDevice);

    /// <summary>A module shows as /sys/module/NAME when loaded (and when built in with parameters, as these have).</summary>
    public KvmModules LoadedKvmModules =>
        (Directory.Exists("/sys/module/kvm_intel") ? KvmModules.Intel : KvmModules.None)
        | (Directory.Exists("/sys/module/kvm_amd") ? KvmModules.Amd : KvmModules.None)
        | (Directory.Exists("/sys/module/kvm_pvm") ? KvmModules.Pvm : KvmModules.None);

    public bool KvmUsable(out string reason)
    {
        var fd = Native.Open(KvmDevice, Native.ORdWr | Native.OCloExec);
        if (fd < 0)
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            reason = errno == Native.ENoEnt ? $"no {KvmDevice}" : $"{KvmDevice}: {Native.ErrorText(errno)}";
            return false;
        }

        _ = Native.Close(fd);
        reason = "";
        return true;
    }

    public bool? IsVsockCidFree(uint cid)
    {
        // The kernel keeps a cid per open vhost-vsock fd; setting one that another VM holds fails with EADDRINUSE.
        var fd = Native.Open(VhostVsockDevice, Native.ORdWr | Native.OCloExec);
        if (fd < 0)
        {
            return null;
        }

        try
        {
            ulong value = cid;
            if (Native.Ioctl(fd, Native.VhostVsockSetGuestCid, ref value) == 0)
            {
                return true;
            }

            return System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == Native.EAddrInUse ? false : null;
        }
        finally
        {
            _ = Native.Close(fd);
        }
    }
}

/// <summary>The choices for one boot attempt of a VM: the accelerator (see <see cref="AcceleratorDecision"/>) and
/// the agent transport.</summary>
internal sealed record HostResolution(AcceleratorKind Accelerator, AgentTransportKind Transport)
{
    public static AgentTransportKind ResolveTransport(HypervisorConfig config, IHostProbe probe) => config.AgentTransport switch
    {
        "vsock" => probe.VhostVsockExists
            ? AgentTransportKind.Vsock
            : throw HypervisorConfigValidator.Error(config, $"agentTransport is vsock but {HostProbe.VhostVsockDevice} does not exist (modprobe vhost_vsock)", "agentTransport"),
        "virtio-serial" => AgentTransportKind.VirtioSerial,
        "auto" => probe.VhostVsockExists ? AgentTransportKind.Vsock : AgentTransportKind.VirtioSerial,
        _ => throw HypervisorConfigValidator.Error(config, $"unknown agentTransport \"{config.AgentTransport}\"", "agentTransport"),
    };
}

/// <summary>Picks guest CIDs: a start derived from the sandbox id, then the next ones, skipping CIDs known to be taken.</summary>
internal static class VsockCidAllocator
{
    /// <summary>The first guest CID (0-2 are reserved: hypervisor, loopback, host).</summary>
    public const uint FirstCid = 3;

    /// <summary>CIDs are picked in [FirstCid, FirstCid + Range).</summary>
    public const uint Range = 0x7FFF_0000;

    /// <summary>How many CIDs <see cref="Pick"/> probes before it gives up.</summary>
    public const int MaxProbes = 64;

    public static uint Start(string sandboxId)
    {
        // FNV-1a: stable across processes (string.GetHashCode is randomised per process).
        var hash = 2166136261u;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(sandboxId))
        {
            hash = (hash ^ b) * 16777619u;
        }

        return FirstCid + (hash % Range);
    }

    public static uint Next(uint cid) => cid + 1 >= FirstCid + Range ? FirstCid : cid + 1;

    /// <summary>The first CID from <paramref name="start"/> on that the probe does not report taken,
    /// skipping the ones in <paramref name="rejected"/> (QEMU refused them).</summary>
    public static uint Pick(uint start, IHostProbe probe, IReadOnlySet<uint> rejected)
    {
        var cid = start;
        for (var i = 0; i < MaxProbes; i++, cid = Next(cid))
        {
            if (rejected.Contains(cid))
            {
                continue;
            }

            if (probe.IsVsockCidFree(cid) != false)
            {
                return cid;
            }
        }

        throw new HypervisorException($"no free vsock guest cid among {MaxProbes} tried from {start}");
    }
}
