using System.Globalization;

namespace ShimV2.GuestAgent.Cgroups;

/// <summary>What StatsContainer reports, read from a cgroup v2 directory.</summary>
internal sealed record CgroupStatsSnapshot
{
    public ulong CpuUsageUsec { get; init; }

    public ulong CpuUserUsec { get; init; }

    public ulong CpuSystemUsec { get; init; }

    public ulong MemoryUsage { get; init; }

    /// <summary>memory.max; <see cref="ulong.MaxValue"/> when unlimited ("max"), as containerd's cgroups package reports it.</summary>
    public ulong MemoryLimit { get; init; }

    public ulong MemoryMaxUsage { get; init; }

    public ulong SwapUsage { get; init; }

    public ulong PidsCurrent { get; init; }

    /// <summary>pids.max; <see cref="ulong.MaxValue"/> when unlimited.</summary>
    public ulong PidsLimit { get; init; }

    public ulong IoReadBytes { get; init; }

    public ulong IoWriteBytes { get; init; }

    public ulong OomKills { get; init; }
}

/// <summary>Parsers for cgroup v2 interface files (pure; the reading is <see cref="Cgroup"/>'s).</summary>
internal static class CgroupStats
{
    /// <summary>"key value" lines (cpu.stat, memory.stat, memory.events, cgroup.events).</summary>
    public static Dictionary<string, ulong> ParseFlatKeyed(string? text)
    {
        var values = new Dictionary<string, ulong>(StringComparer.Ordinal);
        foreach (var line in (text ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (space > 0 && ulong.TryParse(line.AsSpan(space + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v))
            {
                values[line[..space]] = v;
            }
        }

        return values;
    }

    /// <summary>A single value file: a number, or "max" (→ <see cref="ulong.MaxValue"/>); missing or garbled → 0.</summary>
    public static ulong ParseSingle(string? text)
    {
        var t = (text ?? "").Trim();
        if (t == "max")
        {
            return ulong.MaxValue;
        }

        return ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0;
    }

    /// <summary>io.stat ("MAJ:MIN rbytes=N wbytes=N rios=N ..." per device): totals of rbytes and wbytes.</summary>
    public static (ulong Read, ulong Write) ParseIoStat(string? text)
    {
        ulong read = 0, write = 0;
        foreach (var line in (text ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (var field in line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1))
            {
                var eq = field.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0 || !ulong.TryParse(field.AsSpan(eq + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var v))
                {
                    continue;
                }

                switch (field[..eq])
                {
                    case "rbytes":
                        read += v;
                        break;
                    case "wbytes":
                        write += v;
                        break;
                }
            }
        }

        return (read, write);
    }

    /// <summary>Builds the snapshot from the files' contents (null = file absent).</summary>
    public static CgroupStatsSnapshot FromFiles(Func<string, string?> read)
    {
        var cpu = ParseFlatKeyed(read("cpu.stat"));
        var events = ParseFlatKeyed(read("memory.events"));
        var io = ParseIoStat(read("io.stat"));
        return new CgroupStatsSnapshot
        {
            CpuUsageUsec = cpu.GetValueOrDefault("usage_usec"),
            CpuUserUsec = cpu.GetValueOrDefault("user_usec"),
            CpuSystemUsec = cpu.GetValueOrDefault("system_usec"),
            MemoryUsage = ParseSingle(read("memory.current")),
            MemoryLimit = ParseSingle(read("memory.max")),
            MemoryMaxUsage = ParseSingle(read("memory.peak")),
            SwapUsage = ParseSingle(read("memory.swap.current")),
            PidsCurrent = ParseSingle(read("pids.current")),
            PidsLimit = ParseSingle(read("pids.max")),
            IoReadBytes = io.Read,
            IoWriteBytes = io.Write,
            OomKills = events.GetValueOrDefault("oom_kill"),
        };
    }
}
