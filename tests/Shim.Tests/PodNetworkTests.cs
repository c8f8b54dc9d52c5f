using System.Net;
using ShimV2.Netlink;
using ShimV2.Shim.Network;

namespace ShimV2.Shim.Tests;

/// <summary>What the agent is told about a pod interface after a cold boot and after a template restore.</summary>
public sealed class PodNetworkTests
{
    private static readonly PodInterface Eth0 = new("eth0", "0a:58:0a:58:00:05", 1450, 3, [new AddressInfo(3, IPAddress.Parse("10.88.0.5"), 16)], "tap0_cs");

    [Fact]
    public void A_cold_booted_nic_already_has_the_pods_mac()
    {
        var request = PodNetwork.ToAgent(Eth0, "0A:58:0A:58:00:05");
        Assert.Equal("0a:58:0a:58:00:05", request.HwAddr);
        Assert.Equal("", request.CurrentHwAddr);
        Assert.Equal(1450u, request.Mtu);
        Assert.Equal("10.88.0.5", Assert.Single(request.IpAddresses).Address);
    }

    [Fact]
    public void A_restored_nic_is_named_by_the_templates_mac_and_given_the_pods()
    {
        var request = PodNetwork.ToAgent(Eth0, "02:c5:00:00:00:00");
        Assert.Equal("0a:58:0a:58:00:05", request.HwAddr);
        Assert.Equal("02:c5:00:00:00:00", request.CurrentHwAddr);
    }
}
