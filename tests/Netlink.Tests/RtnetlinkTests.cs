using System.Net;
using System.Net.Sockets;

namespace ShimV2.Netlink.Tests;

/// <summary>rtnetlink in a fresh network namespace, checked against what iproute2 reports.</summary>
public sealed class RtnetlinkTests : IDisposable
{
    private readonly TestNamespace _ns = new();

    public RtnetlinkTests() => _ns.InNs("ip", "link", "add", "a0", "type", "veth", "peer", "name", "b0");

    [NetnsFact]
    public void Links_are_listed_with_name_mac_mtu_state_and_kind()
    {
        var links = Netlink(r => r.GetLinks());
        var a0 = Assert.Single(links, l => l.Name == "a0");
        Assert.Equal("veth", a0.Kind);
        Assert.False(a0.Up);
        Assert.Equal(1500u, a0.Mtu);
        Assert.Contains($"link/ether {a0.Mac} ", _ns.InNs("ip", "link", "show", "a0"), StringComparison.Ordinal);
        Assert.Contains(links, l => l.Name == "lo");
    }

    [NetnsFact]
    public void An_interface_is_configured_up_with_mtu_addresses_and_routes()
    {
        Netlink(r =>
        {
            var a0 = r.GetLinks().Single(l => l.Name == "a0").Index;
            var b0 = r.GetLinks().Single(l => l.Name == "b0").Index;
            r.SetUp(b0);
            r.SetUp(a0, mtu: 1400);
            r.AddAddress(a0, IPAddress.Parse("10.77.0.2"), 24);
            r.AddAddress(a0, IPAddress.Parse("fd00:77::2"), 64);
            r.AddRoute(new RouteInfo(null, 0, IPAddress.Parse("10.77.0.1"), null, AddressFamily.InterNetwork), a0);
            r.AddRoute(new RouteInfo(IPAddress.Parse("192.168.50.0"), 24, null, null, AddressFamily.InterNetwork), a0);
            return true;
        });

        var link = _ns.InNs("ip", "link", "show", "a0");
        Assert.Contains("mtu 1400", link, StringComparison.Ordinal);
        Assert.Contains(",UP", link, StringComparison.Ordinal);
        var addresses = _ns.InNs("ip", "addr", "show", "a0");
        Assert.Contains("inet 10.77.0.2/24", addresses, StringComparison.Ordinal);
        Assert.Contains("inet6 fd00:77::2/64", addresses, StringComparison.Ordinal);
        var routes = _ns.InNs("ip", "route", "show");
        Assert.Contains("default via 10.77.0.1 dev a0", routes, StringComparison.Ordinal);
        Assert.Contains("192.168.50.0/24 dev a0", routes, StringComparison.Ordinal);

        var (listedAddresses, listedRoutes) = Netlink(r => (r.GetAddresses(), r.GetRoutes()));
        var index = Netlink(r => r.GetLinks().Single(l => l.Name == "a0").Index);
        Assert.Contains(listedAddresses, a => a.LinkIndex == index && a.Address.Equals(IPAddress.Parse("10.77.0.2")) && a.PrefixLength == 24);
        Assert.Contains(listedRoutes, r => r.IsDefault && r.Family == AddressFamily.InterNetwork && IPAddress.Parse("10.77.0.1").Equals(r.Gateway) && r.LinkIndex == index);
        Assert.Contains(listedRoutes, r => IPAddress.Parse("10.77.0.0").Equals(r.Destination) && r.DestinationLength == 24 && r.Gateway == null);
    }

    [NetnsFact]
    public void Ingress_of_one_interface_is_redirected_to_another()
    {
        _ns.InNs("ip", "tuntap", "add", "dev", "tap0", "mode", "tap");
        Netlink(r =>
        {
            var links = r.GetLinks();
            var a0 = links.Single(l => l.Name == "a0").Index;
            var tap = links.Single(l => l.Name == "tap0").Index;
            r.AddIngressQdisc(a0);
            r.AddIngressQdisc(a0); // already there: kept
            r.AddRedirect(a0, tap);
            r.AddIngressQdisc(tap);
            r.AddRedirect(tap, a0);
            return true;
        });

        Assert.Contains("mirred (Egress Redirect to device tap0) stolen", _ns.InNs("tc", "filter", "show", "dev", "a0", "ingress"), StringComparison.Ordinal);
        Assert.Contains("mirred (Egress Redirect to device a0) stolen", _ns.InNs("tc", "filter", "show", "dev", "tap0", "ingress"), StringComparison.Ordinal);

        Netlink(r =>
        {
            var a0 = r.GetLinks().Single(l => l.Name == "a0").Index;
            r.DeleteIngressQdisc(a0);
            r.DeleteIngressQdisc(a0); // gone already: fine
            return true;
        });
        Assert.Equal("", _ns.InNs("tc", "filter", "show", "dev", "a0", "ingress").Trim());
    }

    [NetnsFact]
    public void A_down_interface_is_renamed()
    {
        Netlink(r =>
        {
            var a0 = r.GetLinks().Single(l => l.Name == "a0").Index;
            r.SetUp(a0);
            r.SetDown(a0);
            r.Rename(a0, "eth7");
            return true;
        });
        Assert.Contains("eth7", _ns.InNs("ip", "-o", "link", "show"), StringComparison.Ordinal);
        Assert.DoesNotContain(" a0@", _ns.InNs("ip", "-o", "link", "show"), StringComparison.Ordinal);
    }

    [NetnsFact]
    public void An_interface_takes_a_new_mac()
    {
        var mac = Netlink(r =>
        {
            var a0 = r.GetLinks().Single(l => l.Name == "a0").Index;
            r.SetMac(a0, "0A:58:0a:58:00:05");
            return r.GetLinks().Single(l => l.Index == a0).Mac;
        });
        Assert.Equal("0a:58:0a:58:00:05", mac);
    }

    [Theory]
    [InlineData("02:c5:00:00:00:01", new byte[] { 2, 0xc5, 0, 0, 0, 1 })]
    [InlineData("FF:ff:00:10:a0:0B", new byte[] { 0xff, 0xff, 0, 0x10, 0xa0, 0x0b })]
    public void Macs_parse_to_their_six_bytes(string mac, byte[] bytes) => Assert.Equal(bytes, Rtnetlink.ParseMac(mac));

    [Theory]
    [InlineData("")]
    [InlineData("02:c5:00:00:00")]
    [InlineData("02:c5:00:00:00:01:02")]
    [InlineData("02:c5:00:00:00:1")]
    [InlineData("02:c5:00:00:00:0g")]
    [InlineData("02-c5-00-00-00-01")]
    [InlineData("02:c5:00:00:00:+1")]
    public void Malformed_macs_are_refused(string mac) =>
        Assert.Equal($"invalid MAC address \"{mac}\"", Assert.Throws<NetlinkException>(() => Rtnetlink.ParseMac(mac)).Message);

    [NetnsFact]
    public void Kernel_errors_name_the_request_and_the_errno()
    {
        var e = Assert.Throws<NetlinkException>(() => Netlink(r =>
        {
            r.AddAddress(9999, IPAddress.Parse("10.1.1.1"), 24);
            return true;
        }));
        Assert.Equal("add address 10.1.1.1/24 to interface #9999: No such device", e.Message);
        Assert.Equal(19, e.Errno);

        var missing = Assert.Throws<NetlinkException>(() => NetworkNamespace.Run("/var/run/netns/csharp-no-such-ns", () => true));
        Assert.StartsWith("open network namespace /var/run/netns/csharp-no-such-ns: No such file", missing.Message, StringComparison.Ordinal);
    }

    public void Dispose() => _ns.Dispose();

    private T Netlink<T>(Func<Rtnetlink, T> work) => NetworkNamespace.Run(_ns.Path, () =>
    {
        using var socket = new NetlinkSocket();
        return work(new Rtnetlink(socket));
    });
}
