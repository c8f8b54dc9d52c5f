using System.Globalization;
using ShimV2.GuestAgent.Oci;

namespace ShimV2.GuestAgent.Cgroups;

/// <summary>One cgroup v2 interface file to write.</summary>
internal readonly record struct CgroupSetting(string File, string Value)
{
    /// <summary>Best effort: skipped when the file does not exist (a controller the kernel lacks, e.g. no swap).</summary>
    public bool Optional { get; init; }

    public override string ToString() => $"{File}={Value}";
}

/// <summary>
/// OCI LinuxResources to cgroup v2 files, with runc's conversions (libcontainer/cgroups/fs2 and
/// cgroups.ConvertCPUSharesToCgroupV2Value etc.). Pure: the agent writes the result.
/// </summary>
internal static class CgroupResources
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>The settings, in the order to apply them.</summary>
    /// <exception cref="AgentException">InvalidArgument for values runc refuses too.</exception>
    public static IReadOnlyList<CgroupSetting> Translate(OciLinuxResources? resources)
    {
        var settings = new List<CgroupSetting>();
        if (resources == null)
        {
            return settings;
        }

        if (resources.Cpu is { } cpu)
        {
            if (cpu.Shares is { } shares && shares != 0)
            {
                settings.Add(new CgroupSetting("cpu.weight", CpuSharesToWeight(shares).ToString(Invariant)));
            }

            if (CpuMax(cpu.Quota, cpu.Period) is { } max)
            {
                settings.Add(new CgroupSetting("cpu.max", max));
            }

            if (cpu.Idle is { } idle)
            {
                settings.Add(new CgroupSetting("cpu.idle", idle ? "1" : "0") { Optional = true });
            }

            if (!string.IsNullOrEmpty(cpu.Cpus))
            {
                settings.Add(new CgroupSetting("cpuset.cpus", cpu.Cpus));
            }

            if (!string.IsNullOrEmpty(cpu.Mems))
            {
                settings.Add(new CgroupSetting("cpuset.mems", cpu.Mems));
            }
        }

        if (resources.Memory is { } memory)
        {
            var limit = memory.Limit ?? 0;
            if (memory.Reservation is { } reservation && reservation != 0)
            {
                settings.Add(new CgroupSetting("memory.low", MaxOr(reservation)));
            }

            // memory.max before memory.swap.max: the swap value is derived from both.
            if (limit != 0)
            {
                settings.Add(new CgroupSetting("memory.max", MaxOr(limit)));
            }

            var swap = SwapToV2(memory.Swap ?? 0, limit);
            if (swap != 0)
            {
                settings.Add(new CgroupSetting("memory.swap.max", MaxOr(swap)) { Optional = true });
            }

            if (memory.DisableOomKiller == true)
            {
                // cgroup v2 has no per-cgroup OOM killer switch: runc ignores it too.
            }
        }

        if (resources.Pids is { } pids && pids.Limit != 0)
        {
            settings.Add(new CgroupSetting("pids.max", pids.Limit > 0 ? pids.Limit.ToString(Invariant) : "max"));
        }

        if (resources.BlockIo?.Weight is { } weight && weight != 0)
        {
            settings.Add(new CgroupSetting("io.weight", BlkioWeightToIoWeight(weight).ToString(Invariant)) { Optional = true });
        }

        foreach (var hugepage in resources.HugepageLimits ?? [])
        {
            if (string.IsNullOrEmpty(hugepage.PageSize) || hugepage.PageSize.Contains('/', StringComparison.Ordinal))
            {
                throw AgentException.InvalidArgument($"invalid hugepage size \"{hugepage.PageSize}\"");
            }

            settings.Add(new CgroupSetting($"hugetlb.{hugepage.PageSize}.max", hugepage.Limit.ToString(Invariant)) { Optional = true });
        }

        foreach (var (key, value) in resources.Unified ?? [])
        {
            if (key.Length == 0 || key.Contains('/', StringComparison.Ordinal) || key.StartsWith('.') || !key.Contains('.', StringComparison.Ordinal))
            {
                throw AgentException.InvalidArgument($"invalid unified cgroup key \"{key}\"");
            }

            // Unified entries override what the typed fields set.
            settings.RemoveAll(s => s.File == key);
            settings.Add(new CgroupSetting(key, value));
        }

        return settings;
    }

    /// <summary>runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] to [1, 10000].</summary>
    public static ulong CpuSharesToWeight(ulong shares)
    {
        if (shares == 0)
        {
            return 0;
        }

        shares = Math.Clamp(shares, 2UL, 262144UL);
        return 1 + ((shares - 2) * 9999 / 262142);
    }

    /// <summary>cpu.max ("$QUOTA $PERIOD"), or null when neither is set. Quota ≤ 0 is "max"; period defaults to 100000.</summary>
    public static string? CpuMax(long? quota, ulong? period)
    {
        var q = quota ?? 0;
        var p = period ?? 0;
        if (q == 0 && p == 0)
        {
            return null;
        }

        var quotaText = q > 0 ? q.ToString(Invariant) : "max";
        return $"{quotaText} {(p == 0 ? 100000 : p).ToString(Invariant)}";
    }

    /// <summary>runc's ConvertMemorySwapToCgroupV2Value: OCI swap is memory+swap; v2 wants swap alone.</summary>
    public static long SwapToV2(long memorySwap, long memory)
    {
        if (memory == -1 && memorySwap == 0)
        {
            return -1;
        }

        if (memorySwap is -1 or 0)
        {
            return memorySwap;
        }

        if (memory is 0 or -1)
        {
            throw AgentException.InvalidArgument("unable to set a swap limit without a memory limit");
        }

        if (memory < 0)
        {
            throw AgentException.InvalidArgument($"invalid memory limit {memory}");
        }

        if (memorySwap < memory)
        {
            throw AgentException.InvalidArgument($"memory+swap limit ({memorySwap}) must be at least the memory limit ({memory})");
        }

        return memorySwap - memory;
    }

    /// <summary>runc's blkio weight [10, 1000] to io.weight [1, 10000].</summary>
    public static ulong BlkioWeightToIoWeight(ushort weight)
    {
        var w = Math.Clamp((ulong)weight, 10UL, 1000UL);
        return 1 + ((w - 10) * 9999 / 990);
    }

    private static string MaxOr(long value) => value < 0 ? "max" : value.ToString(Invariant);
}
