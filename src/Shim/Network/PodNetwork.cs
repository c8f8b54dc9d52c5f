using ShimV2.Agent.Protocol.V1;
using ShimV2.Hypervisor;
using ShimV2.Netlink;

namespace ShimV2.Shim.Network;

/// <summary>One interface of the pod's network namespace (a CNI veth, typically) and the tap that stands for it.</summary>
public sealed record PodInterface(string Name, string Mac, uint Mtu, int Index, IReadOnlyList<AddressInfo> Addresses, string TapName);

/// <summary>
/// The pod's network, handed to the VM as Kata's "tcfilter" model does: QEMU, started in the pod's network
/// namespace, gets one tap per pod interface; tc redirects everything the interface receives to its tap and back,
/// and the guest NIC takes the interface's MAC, addresses and routes. The namespace keeps its interfaces (CNI
/// owns them); what the shim adds there (the taps, which go with QEMU, and the ingress qdiscs) it removes.
/// </summary>
public sealed class PodNetwork
{
    private PodNetwork(string namespacePath, IReadOnlyList<PodInterface> interfaces, IReadOnlyList<Route> routes)
    {
        NamespacePath = namespacePath;
        Interfaces = interfaces;
        Routes = routes;
    }

    public string NamespacePath { get; }

    public IReadOnlyList<PodInterface> Interfaces { get; }

    public IReadOnlyList<Route> Routes { get; }

    public IReadOnlyList<VmNic> Nics => [.. Interfaces.Select(i => new VmNic(i.TapName, i.Mac))];

    /// <summary>Reads the namespace's interfaces with addresses (loopback and taps aside) and their routes.</summary>
    /// <exception cref="NetlinkException">The namespace cannot be entered or read.</exception>
    public static PodNetwork Scan(string namespacePath) => NetworkNamespace.Run(namespacePath, () =>
    {
        using var socket = new NetlinkSocket();
        var rtnl = new Rtnetlink(socket);
        var links = rtnl.GetLinks();
        var addresses = rtnl.GetAddresses().Where(a => !a.Address.IsIPv6LinkLocal).ToList();
        var interfaces = new List<PodInterface>();
        foreach (var link in links.Where(l => l.Name != "lo" && l.Kind != "tun" && l.Mac.Length == 17).OrderBy(l => l.Index))
        {
            var own = addresses.Where(a => a.LinkIndex == link.Index).ToList();
            if (own.Count > 0)
            {
                interfaces.Add(new PodInterface(link.Name, link.Mac, link.Mtu, link.Index, own, $"tap{interfaces.Count}_cs"));
            }
        }

        var names = interfaces.ToDictionary(i => i.Index, i => i.Name);
        var routes = new List<Route>();
        foreach (var route in rtnl.GetRoutes())
        {
            if (route.LinkIndex is not { } index || !names.TryGetValue(index, out var device)
                || route.Destination is { IsIPv6LinkLocal: true } || route.Destination is { IsIPv6Multicast: true })
            {
                continue;
            }

            routes.Add(new Route
            {
                Destination = route.IsDefault ? "default" : $"{route.Destination}/{route.DestinationLength}",
                Gateway = route.Gateway?.ToString() ?? "",
                Device = device,
            });
        }

        return new PodNetwork(namespacePath, interfaces, routes);
    });

    /// <summary>Once QEMU runs (its taps exist): taps up, and each interface's traffic redirected to its tap and back.</summary>
    public void Connect() => NetworkNamespace.Run(NamespacePath, () =>
    {
        using var socket = new NetlinkSocket();
        var rtnl = new Rtnetlink(socket);
        var links = rtnl.GetLinks();
        foreach (var pod in Interfaces)
        {
            var tap = links.FirstOrDefault(l => l.Name == pod.TapName)
                ?? throw new NetlinkException($"tap {pod.TapName} for {pod.Name} is missing in {NamespacePath}");
            rtnl.SetUp(tap.Index, pod.Mtu);
            rtnl.AddIngressQdisc(pod.Index);
            rtnl.AddRedirect(pod.Index, tap.Index);
            rtnl.AddIngressQdisc(tap.Index);
            rtnl.AddRedirect(tap.Index, pod.Index);
        }
    });

    /// <summary>Removes the redirects from the pod's interfaces (the taps went with QEMU). A namespace already gone is fine.</summary>
    public void Disconnect()
    {
        if (!File.Exists(NamespacePath))
        {
            return;
        }

        NetworkNamespace.Run(NamespacePath, () =>
        {
            using var socket = new NetlinkSocket();
            var rtnl = new Rtnetlink(socket);
            var present = rtnl.GetLinks().Select(l => l.Index).ToHashSet();
            foreach (var pod in Interfaces.Where(i => present.Contains(i.Index)))
            {
                rtnl.DeleteIngressQdisc(pod.Index);
            }
        });
    }

    /// <summary>What the agent needs to give the guest NIC the interface's identity; <paramref name="guestMac"/> is
    /// the MAC that NIC has now (a VM restored from a template has the template's).</summary>
    public static Interface ToAgent(PodInterface pod, string? guestMac = null)
    {
        ArgumentNullException.ThrowIfNull(pod);
        var result = new Interface { Name = pod.Name, HwAddr = pod.Mac, Mtu = pod.Mtu };
        if (guestMac is not null && !string.Equals(guestMac, pod.Mac, StringComparison.OrdinalIgnoreCase))
        {
            result.CurrentHwAddr = guestMac;
        }

        foreach (var a in pod.Addresses)
        {
            result.IpAddresses.Add(new ShimV2.Agent.Protocol.V1.IPAddress { Address = a.Address.ToString(), PrefixLength = (uint)a.PrefixLength });
        }

        return result;
    }

    public override string ToString() =>
        string.Join("; ", Interfaces.Select(i => $"{i.Name} {i.Mac} mtu {i.Mtu} {string.Join(' ', i.Addresses.Select(a => $"{a.Address}/{a.PrefixLength}"))} via {i.TapName}"))
        + (Routes.Count > 0 ? $"; routes: {string.Join(", ", Routes.Select(r => $"{r.Destination}{(r.Gateway.Length > 0 ? " via " + r.Gateway : "")} dev {r.Device}"))}" : "");
}
