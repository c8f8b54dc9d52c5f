using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using V1 = Containerd.Cgroups.V1;
using V2 = Containerd.Cgroups.V2;

namespace ShimV2.Shim.Tasks;

/// <summary>
/// Turns the guest's cgroup numbers into the Metrics type containerd and CRI expect: v2 when the host runs the
/// unified hierarchy, else v1 (CRI decodes by what the host uses, and rejects any other type).
/// </summary>
public static class CgroupMetrics
{
    private static readonly bool HostIsV2 = File.Exists("/sys/fs/cgroup/cgroup.controllers");

    public static Any ToAny(StatsContainerResponse stats, bool? hostIsV2 = null)
    {
        IMessage metrics = hostIsV2 ?? HostIsV2 ? ToV2(stats) : ToV1(stats);
        return new Any { TypeUrl = metrics.Descriptor.FullName, Value = metrics.ToByteString() };
    }

    public static V2.Metrics ToV2(StatsContainerResponse s) => new()
    {
        Pids = new V2.PidsStat { Current = s.PidsCurrent, Limit = s.PidsLimit },
        Cpu = new V2.CPUStat { UsageUsec = s.CpuUsageUsec, UserUsec = s.CpuUserUsec, SystemUsec = s.CpuSystemUsec },
        Memory = new V2.MemoryStat
        {
            Usage = s.MemoryUsageBytes,
            UsageLimit = s.MemoryLimitBytes,
            MaxUsage = s.MemoryMaxUsageBytes,
            SwapUsage = s.MemorySwapUsageBytes,
        },
        Io = new V2.IOStat { Usage = { new V2.IOEntry { Rbytes = s.IoReadBytes, Wbytes = s.IoWriteBytes } } },
        MemoryEvents = new V2.MemoryEvents { OomKill = s.OomKillCount },
    };

    public static V1.Metrics ToV1(StatsContainerResponse s) => new()
    {
        Pids = new V1.PidsStat { Current = s.PidsCurrent, Limit = s.PidsLimit },
        Cpu = new V1.CPUStat
        {
            Usage = new V1.CPUUsage { Total = s.CpuUsageUsec * 1000, User = s.CpuUserUsec * 1000, Kernel = s.CpuSystemUsec * 1000 },
        },
        Memory = new V1.MemoryStat
        {
            Usage = new V1.MemoryEntry { Usage = s.MemoryUsageBytes, Limit = s.MemoryLimitBytes, Max = s.MemoryMaxUsageBytes },
            Swap = new V1.MemoryEntry { Usage = s.MemorySwapUsageBytes },
        },
        Blkio = new V1.BlkIOStat
        {
            IoServiceBytesRecursive =
            {
                new V1.BlkIOEntry { Op = "Read", Value = s.IoReadBytes },
                new V1.BlkIOEntry { Op = "Write", Value = s.IoWriteBytes },
            },
        },
    };
}
