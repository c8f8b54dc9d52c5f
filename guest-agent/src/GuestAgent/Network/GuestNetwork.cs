using System.Net;
using System.Net.Sockets;
using ShimV2.Netlink;
using AgentApi = ShimV2.Agent.Protocol.V1;

namespace ShimV2.GuestAgent.Network;

/// <summary>
/// Gives the guest the pod's network: the NIC QEMU presents with the pod interface's MAC takes its name, MTU and
/// addresses, then the pod's routes are added. Frames pass between that NIC and the pod's interface unchanged
/// (the shim redirects them with tc), so the guest is, on the wire, the pod's interface itself.
/// </summary>
internal static class GuestNetwork
{
    /// <summary>How long a NIC may take to appear: virtio_net probes it while the agent is already serving.</summary>
    private static readonly TimeSpan DeviceWait = TimeSpan.FromSeconds(10);

    public static async Task<AgentApi.Interface> UpdateInterfaceAsync(AgentApi.Interface request, CancellationToken ct)
    {
        if (request.Name.Length is 0 or > 15 || request.Name.Contains('/', StringComparison.Ordinal) || request.Name.Any(char.IsWhiteSpace))
        {
            throw AgentException.InvalidArgument($"invalid interface name \"{request.Name}\"");
        }

        var mac = request.HwAddr.ToLowerInvariant();
        // A NIC of a VM restored from a template still has the template's MAC; one given it already is found too
        // (UpdateInterface may be repeated).
        var current = request.CurrentHwAddr.ToLowerInvariant();
        if (current.Length > 0)
        {
            try
            {
                Rtnetlink.ParseMac(mac);
                Rtnetlink.ParseMac(current);
            }
            catch (NetlinkException e)
            {
                throw AgentException.InvalidArgument(e.Message);
            }
        }

        var addresses = request.IpAddresses.Select(a => (Address: ParseAddress(a.Address), Prefix: (int)a.PrefixLength)).ToList();
        foreach (var (address, prefix) in addresses)
        {
            var max = address.AddressFamily == AddressFamily.InterNetworkV6 ? 128 : 32;
            if (prefix > max)
            {
                throw AgentException.InvalidArgument($"invalid prefix length {prefix} for {address}");
            }
        }

        var deadline = DateTime.UtcNow + DeviceWait;
        while (true)
        {
            var links = Run(r => r.GetLinks());
            var link = links.FirstOrDefault(l => l.Mac == mac) ?? (current.Length > 0 ? links.FirstOrDefault(l => l.Mac == current) : null);
            if (link != null)
            {
                Run(r =>
                {
                    if (link.Mac != mac)
                    {
                        r.SetDown(link.Index);
                        r.SetMac(link.Index, mac);
                    }

                    if (link.Name != request.Name)
                    {
                        r.SetDown(link.Index);
                        r.Rename(link.Index, request.Name);
                    }

                    r.SetUp(link.Index, request.Mtu > 0 ? request.Mtu : null);
                    foreach (var (address, prefix) in addresses)
                    {
                        r.AddAddress(link.Index, address, prefix);
                    }

                    return true;
                });
                return request;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw AgentException.NotFound(current.Length > 0
                    ? $"no network interface with MAC {request.HwAddr} or {request.CurrentHwAddr} in the guest"
                    : $"no network interface with MAC {request.HwAddr} in the guest");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50), ct);
        }
    }

    public static AgentApi.UpdateRoutesResponse UpdateRoutes(AgentApi.UpdateRoutesRequest request)
    {
        var parsed = request.Routes.Select(r => (Request: r, Route: ParseRoute(r))).ToList();
        Run(r =>
        {
            var links = r.GetLinks().ToDictionary(l => l.Name, l => l.Index, StringComparer.Ordinal);
            // Routes straight out of a device first: a gateway must be reachable when its route is added.
            foreach (var (pb, route) in parsed.OrderBy(p => p.Route.Gateway is null ? 0 : 1))
            {
                if (!links.TryGetValue(pb.Device, out var index))
                {
                    throw AgentException.NotFound($"route {route}: no interface \"{pb.Device}\" in the guest");
                }

                r.AddRoute(route, index);
            }

            return true;
        });
        var response = new AgentApi.UpdateRoutesResponse();
        response.Routes.Add(request.Routes);
        return response;
    }

    private static RouteInfo ParseRoute(AgentApi.Route route)
    {
        var gateway = string.IsNullOrEmpty(route.Gateway) ? null : ParseAddress(route.Gateway);
        if (route.Destination is "default" or "")
        {
            var family = gateway?.AddressFamily ?? throw AgentException.InvalidArgument("a default route needs a gateway");
            return new RouteInfo(null, 0, gateway, null, family);
        }

        if (!IPNetwork.TryParse(route.Destination, out var network))
        {
            throw AgentException.InvalidArgument($"invalid route destination \"{route.Destination}\" (want CIDR or \"default\")");
        }

        if (gateway != null && gateway.AddressFamily != network.BaseAddress.AddressFamily)
        {
            throw AgentException.InvalidArgument($"route {route.Destination}: gateway {gateway} is of another address family");
        }

        return new RouteInfo(network.BaseAddress, network.PrefixLength, gateway, null, network.BaseAddress.AddressFamily);
    }

    private static IPAddress ParseAddress(string text) =>
        IPAddress.TryParse(text, out var address) ? address : throw AgentException.InvalidArgument($"invalid IP address \"{text}\"");

    private static T Run<T>(Func<Rtnetlink, T> work)
    {
        try
        {
            using var socket = new NetlinkSocket();
            return work(new Rtnetlink(socket));
        }
        catch (NetlinkException e)
        {
            throw AgentException.FailedPrecondition(e.Message);
        }
    }
}
