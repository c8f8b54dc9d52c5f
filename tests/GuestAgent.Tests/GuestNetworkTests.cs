using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent.Network;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

/// <summary>Requests the agent refuses before touching the guest's network (the E2E network test covers the rest).</summary>
public sealed class GuestNetworkTests
{
    [Theory]
    [InlineData("", "02:00:00:00:00:01", "10.0.0.2", 24u, "invalid interface name \"\"")]
    [InlineData("a-very-long-name0", "02:00:00:00:00:01", "10.0.0.2", 24u, "invalid interface name")]
    [InlineData("eth/0", "02:00:00:00:00:01", "10.0.0.2", 24u, "invalid interface name")]
    [InlineData("eth0", "02:00:00:00:00:01", "10.0.0.300", 24u, "invalid IP address \"10.0.0.300\"")]
    [InlineData("eth0", "02:00:00:00:00:01", "10.0.0.2", 33u, "invalid prefix length 33 for 10.0.0.2")]
    [InlineData("eth0", "02:00:00:00:00:01", "fd00::2", 129u, "invalid prefix length 129 for fd00::2")]
    public async Task Bad_interfaces_are_invalid_arguments(string name, string mac, string address, uint prefix, string message)
    {
        var request = new Interface { Name = name, HwAddr = mac, Mtu = 1500 };
        request.IpAddresses.Add(new IPAddress { Address = address, PrefixLength = prefix });
        var e = await Assert.ThrowsAsync<AgentException>(() => GuestNetwork.UpdateInterfaceAsync(request, CancellationToken.None));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.StartsWith(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("02:00:00:00:00:01", "02:c5:00:00:00", "invalid MAC address \"02:c5:00:00:00\"")]
    [InlineData("02:00:00:00:00", "02:c5:00:00:00:00", "invalid MAC address \"02:00:00:00:00\"")]
    public async Task A_restored_nic_with_a_bad_mac_is_an_invalid_argument(string mac, string current, string message)
    {
        var request = new Interface { Name = "eth0", HwAddr = mac, CurrentHwAddr = current, Mtu = 1500 };
        var e = await Assert.ThrowsAsync<AgentException>(() => GuestNetwork.UpdateInterfaceAsync(request, CancellationToken.None));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Equal(message, e.Message);
    }

    [Theory]
    [InlineData("default", "", "a default route needs a gateway")]
    [InlineData("10.0.0.0/33", "", "invalid route destination \"10.0.0.0/33\" (want CIDR or \"default\")")]
    [InlineData("10.0.0.0/8", "fd00::1", "route 10.0.0.0/8: gateway fd00::1 is of another address family")]
    [InlineData("10.0.0.0/8", "gw", "invalid IP address \"gw\"")]
    public void Bad_routes_are_invalid_arguments(string destination, string gateway, string message)
    {
        var request = new UpdateRoutesRequest();
        request.Routes.Add(new Route { Destination = destination, Gateway = gateway, Device = "eth0" });
        var e = Assert.Throws<AgentException>(() => GuestNetwork.UpdateRoutes(request));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Equal(message, e.Message);
    }
}
