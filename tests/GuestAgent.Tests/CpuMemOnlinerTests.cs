using ShimV2.GuestAgent.Hotplug;
using ShimV2.GuestAgent.Tests.Support;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

public sealed class CpuMemOnlinerTests : IDisposable
{
    private readonly TempDir _sys = new();

    public CpuMemOnlinerTests()
    {
        _sys.Make("cpu/cpu0"); // the boot CPU has no online file
        _sys.Make("cpu/cpu1/online", "1\n");
        _sys.Make("cpu/cpu2/online", "0\n");
        _sys.Make("cpu/cpu10/online", "0\n");
        _sys.Make("cpu/cpufreq");
        _sys.Make("memory/memory0/state", "online\n");
        _sys.Make("memory/memory1/state", "offline\n");
        _sys.Make("memory/auto_online_blocks", "offline\n");
    }

    public void Dispose() => _sys.Dispose();

    [Fact]
    public async Task Brings_the_requested_number_of_cpus_online_lowest_first_and_the_memory()
    {
        var (cpus, blocks) = await new CpuMemOnliner(_sys.Path).OnlineAsync(1, cpuOnly: false, CancellationToken.None);
        Assert.Equal((1, 1), (cpus, blocks));
        Assert.Equal("1", Read("cpu/cpu2/online"));
        Assert.Equal("0", Read("cpu/cpu10/online"));
        Assert.StartsWith("online", Read("memory/memory1/state"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Zero_cpus_means_all_and_cpu_only_leaves_memory()
    {
        var (cpus, blocks) = await new CpuMemOnliner(_sys.Path).OnlineAsync(0, cpuOnly: true, CancellationToken.None);
        Assert.Equal((2, 0), (cpus, blocks));
        Assert.Equal("offline", Read("memory/memory1/state"));
    }

    [Fact]
    public async Task Cpus_that_never_appear_are_a_deadline_error()
    {
        var onliner = new CpuMemOnliner(_sys.Path, TimeSpan.FromMilliseconds(100));
        var e = await Assert.ThrowsAsync<AgentException>(() => onliner.OnlineAsync(3, cpuOnly: true, CancellationToken.None));
        Assert.Equal(TtrpcStatusCode.DeadlineExceeded, e.Code);
        Assert.Contains("only 2 of 3", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Memory_auto_online_is_switched_on()
    {
        Assert.True(new CpuMemOnliner(_sys.Path).EnableMemoryAutoOnline());
        Assert.StartsWith("online", Read("memory/auto_online_blocks"), StringComparison.Ordinal);
    }

    private string Read(string relative) => File.ReadAllText(Path.Combine(_sys.Path, relative)).Trim();
}
