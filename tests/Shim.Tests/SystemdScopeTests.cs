using ShimV2.Shim.Cgroups;
using Tmds.DBus.Protocol;

namespace ShimV2.Shim.Tests;

/// <summary>The systemd driver at its seams: the StartTransientUnit request, the scope's life around the VM's
/// (a fake manager), and the error on a host without systemd.</summary>
public sealed class SystemdScopeTests
{
    private static readonly CgroupsPath Path = CgroupsPath.Parse("kubepods-besteffort-pod0f1e.slice:cri-containerd:abc123");

    [Fact]
    public void The_request_is_a_delegated_scope_in_the_pods_slice_holding_the_pids()
    {
        var request = SystemdScopeRequest.For(Path, "abc123", 4242);
        Assert.Equal("cri-containerd-abc123.scope", request.Unit);
        Assert.Equal("replace", SystemdScopeRequest.Mode);
        var properties = request.Properties().ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("kubepods-besteffort-pod0f1e.slice", properties["Slice"].GetString());
        Assert.True(properties["Delegate"].GetBool());
        Assert.False(properties["DefaultDependencies"].GetBool());
        Assert.Equal(new[] { 4242u }, properties["PIDs"].GetArray<uint>());
        Assert.True(properties["MemoryAccounting"].GetBool());
        Assert.Contains("abc123", properties["Description"].GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_cgroupfs_path_makes_no_systemd_request() =>
        Assert.Throws<ArgumentException>(() => SystemdScopeRequest.For(CgroupsPath.Parse("/kubepods/x"), "x", 1));

    [Fact]
    public async Task The_scope_is_started_for_the_shim_and_stopped_when_the_pod_leaves()
    {
        var systemd = new FakeSystemd();
        var record = System.IO.Path.Combine(Directory.CreateTempSubdirectory("csharp-scope-").FullName, HostCgroup.RecordFileName);
        // Hierarchies mounted nowhere: moving back out writes nothing real.
        var nowhere = CgroupHierarchies.Parse("31 30 0:28 / /nonexistent/csharp-test/cpu rw - cgroup cgroup rw,cpu");

        var cgroup = await HostCgroup.EnterAsync(Path, Environment.ProcessId, "abc123", record, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance,
            CancellationToken.None, systemd, nowhere);
        var started = Assert.Single(systemd.Started);
        Assert.Equal(("cri-containerd-abc123.scope", "kubepods-besteffort-pod0f1e.slice"), (started.Unit, started.Slice));
        Assert.Equal(new[] { (uint)Environment.ProcessId }, started.Pids);
        Assert.Equal(new[] { "/nonexistent/csharp-test/cpu/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e.slice/cri-containerd-abc123.scope" },
            cgroup.Directories);
        Assert.True(File.Exists(record));

        await cgroup.LeaveAsync(CancellationToken.None);
        Assert.Equal(new[] { "cri-containerd-abc123.scope" }, systemd.Stopped);
        Assert.False(File.Exists(record));
    }

    [Fact]
    public async Task A_refused_scope_leaves_no_record()
    {
        var systemd = new FakeSystemd { Refuse = true };
        var record = System.IO.Path.Combine(Directory.CreateTempSubdirectory("csharp-scope-").FullName, HostCgroup.RecordFileName);
        var nowhere = CgroupHierarchies.Parse("31 30 0:28 / /nonexistent/csharp-test/cpu rw - cgroup cgroup rw,cpu");
        var e = await Assert.ThrowsAsync<HostCgroupException>(() => HostCgroup.EnterAsync(
            Path, Environment.ProcessId, "abc123", record, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None, systemd, nowhere));
        Assert.Contains("UnitExists", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(record));
    }

    [NoSystemdFact]
    public async Task Without_systemd_a_systemd_path_fails_saying_which_driver_to_use()
    {
        var record = System.IO.Path.Combine(Directory.CreateTempSubdirectory("csharp-scope-").FullName, HostCgroup.RecordFileName);
        var e = await Assert.ThrowsAsync<HostCgroupException>(() => HostCgroup.EnterAsync(
            Path, Environment.ProcessId, "abc123", record, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None));
        Assert.Contains("systemd is not running on this host", e.Message, StringComparison.Ordinal);
        Assert.Contains("cgroupfs", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(record));
    }

    private sealed class FakeSystemd : ISystemdManager
    {
        public bool Refuse { get; init; }

        public List<SystemdScopeRequest> Started { get; } = [];

        public List<string> Stopped { get; } = [];

        public Task StartTransientUnitAsync(SystemdScopeRequest request, CancellationToken cancellationToken)
        {
            if (Refuse)
            {
                throw new HostCgroupException($"systemd refused the scope {request.Unit} in {request.Slice}: org.freedesktop.systemd1.UnitExists: exists");
            }

            Started.Add(request);
            return Task.CompletedTask;
        }

        public Task StopUnitAsync(string unit, CancellationToken cancellationToken)
        {
            Stopped.Add(unit);
            return Task.CompletedTask;
        }
    }
}

/// <summary>A test of how the shim behaves where systemd is not PID 1 (as on the build machines).</summary>
public sealed class NoSystemdFactAttribute : FactAttribute
{
    public NoSystemdFactAttribute()
    {
        if (SystemdDbusManager.SystemdRunning)
        {
            Skip = $"systemd runs on this host ({SystemdDbusManager.BootedMarker} exists)";
        }
    }
}
