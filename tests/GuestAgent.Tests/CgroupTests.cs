using ShimV2.GuestAgent.Cgroups;
using ShimV2.GuestAgent.Oci;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

public class CgroupTests
{
    [Fact]
    public void Linux_resources_become_cgroup_v2_files_as_runc_writes_them()
    {
        var resources = OciJson.ParseResources("""
            {
              "cpu": { "shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0" },
              "memory": { "limit": 268435456, "reservation": 134217728, "swap": 536870912 },
              "pids": { "limit": 100 },
              "blockIO": { "weight": 500 },
              "hugepageLimits": [ { "pageSize": "2MB", "limit": 4194304 } ],
              "unified": { "memory.high": "200000000", "pids.max": "50" }
            }
            """u8);
        var settings = CgroupResources.Translate(resources).Select(s => s.ToString()).ToList();
        Assert.Equal(
            [
                "cpu.weight=39",
                "cpu.max=50000 100000",
                "cpuset.cpus=0",
                "cpuset.mems=0",
                "memory.low=134217728",
                "memory.max=268435456",
                "memory.swap.max=268435456",
                "io.weight=4950",
                "hugetlb.2MB.max=4194304",
                "memory.high=200000000",
                "pids.max=50",
            ],
            settings);
    }

    [Theory]
    [InlineData(0UL, 0UL)]
    [InlineData(2UL, 1UL)]
    [InlineData(1024UL, 39UL)]
    [InlineData(262144UL, 10000UL)]
    [InlineData(1UL, 1UL)]
    [InlineData(1_000_000UL, 10000UL)]
    public void Cpu_shares_map_onto_cpu_weight(ulong shares, ulong weight) => Assert.Equal(weight, CgroupResources.CpuSharesToWeight(shares));

    [Theory]
    [InlineData(null, null, null)]
    [InlineData(0L, 0UL, null)]
    [InlineData(-1L, 100000UL, "max 100000")]
    [InlineData(20000L, 0UL, "20000 100000")]
    [InlineData(0L, 50000UL, "max 50000")]
    [InlineData(150000L, 100000UL, "150000 100000")]
    public void Cpu_quota_and_period_map_onto_cpu_max(long? quota, ulong? period, string? expected) =>
        Assert.Equal(expected, CgroupResources.CpuMax(quota, period));

    [Theory]
    [InlineData(-1L, 0L, -1L)]
    [InlineData(0L, -1L, -1L)]
    [InlineData(-1L, 100L, -1L)]
    [InlineData(300L, 100L, 200L)]
    [InlineData(100L, 100L, 0L)]
    [InlineData(0L, 100L, 0L)]
    public void Oci_swap_is_memory_plus_swap(long swap, long memory, long expected) => Assert.Equal(expected, CgroupResources.SwapToV2(swap, memory));

    [Theory]
    [InlineData(100L, 0L, "without a memory limit")]
    [InlineData(50L, 100L, "must be at least the memory limit")]
    public void Impossible_swap_limits_are_refused(long swap, long memory, string message)
    {
        var e = Assert.Throws<AgentException>(() => CgroupResources.SwapToV2(swap, memory));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unlimited_values_are_max_and_unset_ones_are_not_written()
    {
        var unlimited = CgroupResources.Translate(OciJson.ParseResources("""{"memory":{"limit":-1},"pids":{"limit":-1}}"""u8)).Select(s => s.ToString());
        Assert.Equal(["memory.max=max", "memory.swap.max=max", "pids.max=max"], unlimited);
        Assert.Empty(CgroupResources.Translate(OciJson.ParseResources("""{"memory":{},"cpu":{"shares":0},"pids":{"limit":0}}"""u8)));
        Assert.Empty(CgroupResources.Translate(null));
    }

    [Theory]
    [InlineData("""{"unified":{"../../escape":"1"}}""")]
    [InlineData("""{"unified":{"nodot":"1"}}""")]
    [InlineData("""{"hugepageLimits":[{"pageSize":"../x","limit":1}]}""")]
    public void Unsafe_file_names_are_refused(string json)
    {
        var e = Assert.Throws<AgentException>(() => CgroupResources.Translate(OciJson.ParseResources(System.Text.Encoding.UTF8.GetBytes(json))));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
    }

    [Fact]
    public void Stats_are_read_from_the_v2_files()
    {
        var files = new Dictionary<string, string>
        {
            ["cpu.stat"] = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
            ["memory.current"] = "4096\n",
            ["memory.max"] = "max\n",
            ["memory.peak"] = "8192\n",
            ["memory.events"] = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
            ["pids.current"] = "2\n",
            ["pids.max"] = "100\n",
            ["io.stat"] = "254:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=24 wbytes=1 rios=1 wios=1\n",
        };
        var stats = CgroupStats.FromFiles(f => files.GetValueOrDefault(f));
        Assert.Equal((1500UL, 1000UL, 500UL), (stats.CpuUsageUsec, stats.CpuUserUsec, stats.CpuSystemUsec));
        Assert.Equal((4096UL, ulong.MaxValue, 8192UL, 0UL), (stats.MemoryUsage, stats.MemoryLimit, stats.MemoryMaxUsage, stats.SwapUsage));
        Assert.Equal((2UL, 100UL), (stats.PidsCurrent, stats.PidsLimit));
        Assert.Equal((1024UL, 2001UL), (stats.IoReadBytes, stats.IoWriteBytes));
        Assert.Equal(1UL, stats.OomKills);
    }

    [Fact]
    public void Missing_or_garbled_files_read_as_zero()
    {
        var stats = CgroupStats.FromFiles(f => f == "pids.current" ? "garbage" : null);
        Assert.Equal(new CgroupStatsSnapshot(), stats);
        Assert.Equal(0UL, CgroupStats.ParseFlatKeyed("populated\nfrozen x\n").GetValueOrDefault("frozen"));
        Assert.Equal(1UL, CgroupStats.ParseFlatKeyed("populated 1\nfrozen 0\n")["populated"]);
    }
}
