namespace ShimV2.Hypervisor.Tests;

/// <summary>The agent transport's "auto" and vsock guest CIDs, against a fake host.</summary>
public sealed class HostResolutionTests
{
    [Theory]
    [InlineData("auto", false, AgentTransportKind.VirtioSerial)]
    [InlineData("auto", true, AgentTransportKind.Vsock)]
    [InlineData("virtio-serial", true, AgentTransportKind.VirtioSerial)]
    [InlineData("vsock", true, AgentTransportKind.Vsock)]
    public void Agent_transport(string configured, bool vhostVsock, AgentTransportKind expected)
    {
        var config = new HypervisorConfig { AgentTransport = configured };

        Assert.Equal(expected, HostResolution.ResolveTransport(config, new FakeHostProbe { VhostVsockExists = vhostVsock }));
    }

    [Fact]
    public void Vsock_without_dev_vhost_vsock_is_a_config_error_saying_why()
    {
        var config = new HypervisorConfig { AgentTransport = "vsock", SourcePath = "/etc/q.json" };

        var e = Assert.Throws<HypervisorConfigException>(() => HostResolution.ResolveTransport(config, new FakeHostProbe()));

        Assert.Equal(
            "agentTransport is vsock but /dev/vhost-vsock does not exist (modprobe vhost_vsock) (hypervisor config /etc/q.json, field agentTransport)",
            e.Message);
    }

    [Fact]
    public void The_first_cid_is_stable_per_sandbox_and_never_reserved()
    {
        var a = VsockCidAllocator.Start("sandbox-a");

        Assert.Equal(a, VsockCidAllocator.Start("sandbox-a"));
        Assert.NotEqual(a, VsockCidAllocator.Start("sandbox-b"));
        foreach (var id in Enumerable.Range(0, 1000).Select(i => $"sb{i}"))
        {
            var cid = VsockCidAllocator.Start(id);
            Assert.InRange(cid, VsockCidAllocator.FirstCid, VsockCidAllocator.FirstCid + VsockCidAllocator.Range - 1);
        }
    }

    [Fact]
    public void Pick_skips_cids_another_vm_holds_and_cids_qemu_refused()
    {
        var probe = new FakeHostProbe { TakenCids = [100, 101] };

        Assert.Equal(102u, VsockCidAllocator.Pick(100, probe, new HashSet<uint>()));
        Assert.Equal(103u, VsockCidAllocator.Pick(100, probe, new HashSet<uint> { 102 }));
        Assert.Equal(100u, VsockCidAllocator.Pick(100, new FakeHostProbe { CanProbeCids = false }, new HashSet<uint>()));
    }

    [Fact]
    public void Pick_wraps_past_the_last_cid()
    {
        var last = VsockCidAllocator.FirstCid + VsockCidAllocator.Range - 1;

        Assert.Equal(VsockCidAllocator.FirstCid, VsockCidAllocator.Next(last));
        Assert.Equal(VsockCidAllocator.FirstCid, VsockCidAllocator.Pick(last, new FakeHostProbe { TakenCids = [last] }, new HashSet<uint>()));
    }

    [Fact]
    public void Pick_gives_up_with_a_clear_error()
    {
        var taken = Enumerable.Range(0, VsockCidAllocator.MaxProbes).Select(i => (uint)(500 + i)).ToHashSet();

        var e = Assert.Throws<HypervisorException>(() => VsockCidAllocator.Pick(500, new FakeHostProbe { TakenCids = taken }, new HashSet<uint>()));

        Assert.Equal($"no free vsock guest cid among {VsockCidAllocator.MaxProbes} tried from 500", e.Message);
    }
}
