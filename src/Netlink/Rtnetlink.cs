using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace ShimV2.Netlink;

/// <summary>A network interface (struct ifinfomsg and its attributes).</summary>
public sealed record LinkInfo(int Index, string Name, string Mac, uint Mtu, bool Up, string? Kind);

/// <summary>An address on an interface (struct ifaddrmsg).</summary>
public sealed record AddressInfo(int LinkIndex, IPAddress Address, int PrefixLength);

/// <summary>A route of the main table. No destination means the default route.</summary>
public sealed record RouteInfo(IPAddress? Destination, int DestinationLength, IPAddress? Gateway, int? LinkIndex, AddressFamily Family)
{
    public bool IsDefault => Destination is null || DestinationLength == 0;

    public override string ToString() =>
        $"{(IsDefault ? "default" : $"{Destination}/{DestinationLength}")}{(Gateway is null ? "" : $" via {Gateway}")}{(LinkIndex is { } i ? $" dev #{i}" : "")}";
}

/// <summary>The rtnetlink requests the runtime needs, on one <see cref="NetlinkSocket"/>.</summary>
public sealed class Rtnetlink(NetlinkSocket socket)
{
    private const ushort RTM_NEWLINK = 16;
    private const ushort RTM_GETLINK = 18;
    private const ushort RTM_NEWADDR = 20;
    private const ushort RTM_GETADDR = 22;
    private const ushort RTM_NEWROUTE = 24;
    private const ushort RTM_GETROUTE = 26;
    private const ushort RTM_NEWQDISC = 36;
    private const ushort RTM_DELQDISC = 37;
    private const ushort RTM_NEWTFILTER = 44;

    private const ushort IFLA_ADDRESS = 1;
    private const ushort IFLA_IFNAME = 3;
    private const ushort IFLA_MTU = 4;
    private const ushort IFLA_LINKINFO = 18;
    private const ushort IFLA_INFO_KIND = 1;
    private const ushort IFA_ADDRESS = 1;
    private const ushort IFA_LOCAL = 2;
    private const ushort RTA_DST = 1;
    private const ushort RTA_OIF = 4;
    private const ushort RTA_GATEWAY = 5;
    private const ushort RTA_TABLE = 15;
    private const ushort TCA_KIND = 1;
    private const ushort TCA_OPTIONS = 2;
    private const ushort TCA_U32_SEL = 5;
    private const ushort TCA_U32_ACT = 7;
    private const ushort TCA_ACT_KIND = 1;
    private const ushort TCA_ACT_OPTIONS = 2;
    private const ushort TCA_MIRRED_PARMS = 2;

    private const uint IFF_UP = 0x1;
    private const byte RT_TABLE_MAIN = 254;
    private const byte RTN_UNICAST = 1;
    private const byte RTPROT_BOOT = 3;
    private const byte RT_SCOPE_UNIVERSE = 0;
    private const byte RT_SCOPE_LINK = 253;
    private const uint TC_H_INGRESS = 0xFFFFFFF1;
    private const uint IngressHandle = 0xFFFF0000;
    private const int TC_ACT_STOLEN = 4;
    private const int TCA_EGRESS_REDIR = 1;
    private const int EEXIST = 17;

    public List<LinkInfo> GetLinks()
    {
        var links = new List<LinkInfo>();
        foreach (var (type, body) in socket.Dump(new NetlinkMessage(RTM_GETLINK, 0).Header(new byte[16]), "list interfaces"))
        {
            if (type == RTM_NEWLINK)
            {
                links.Add(ParseLink(body));
            }
        }

        return links;
    }

    public List<AddressInfo> GetAddresses()
    {
        var addresses = new List<AddressInfo>();
        foreach (var (type, body) in socket.Dump(new NetlinkMessage(RTM_GETADDR, 0).Header(new byte[8]), "list addresses"))
        {
            if (type == RTM_NEWADDR && ParseAddress(body) is { } address)
            {
                addresses.Add(address);
            }
        }

        return addresses;
    }

    /// <summary>Unicast routes of the main table, IPv4 and IPv6.</summary>
    public List<RouteInfo> GetRoutes()
    {
        var routes = new List<RouteInfo>();
        foreach (var (type, body) in socket.Dump(new NetlinkMessage(RTM_GETROUTE, 0).Header(new byte[12]), "list routes"))
        {
            if (type == RTM_NEWROUTE && ParseRoute(body) is { } route)
            {
                routes.Add(route);
            }
        }

        return routes;
    }

    /// <summary>An RTM_NEWLINK body: ifinfomsg (16 bytes), then attributes.</summary>
    /// <exception cref="NetlinkException">Truncated or malformed.</exception>
    internal static LinkInfo ParseLink(ReadOnlyMemory<byte> body)
    {
        var header = Fixed(body, 16, "interface");
        var index = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        string name = "", mac = "";
        uint mtu = 0;
        string? kind = null;
        foreach (var a in NetlinkAttributes.Parse(body[16..]))
        {
            switch (a.Type)
            {
                case IFLA_IFNAME:
                    name = a.String;
                    break;
                case IFLA_ADDRESS:
                    mac = FormatMac(a.Payload.Span);
                    break;
                case IFLA_MTU:
                    mtu = a.U32;
                    break;
                case IFLA_LINKINFO:
                    kind = NetlinkAttributes.Parse(a.Payload).Where(i => i.Type == IFLA_INFO_KIND).Select(i => i.String).FirstOrDefault();
                    break;
            }
        }

        return new LinkInfo(index, name, mac, mtu, (flags & IFF_UP) != 0, kind);
    }

    /// <summary>An RTM_NEWADDR body: ifaddrmsg (8 bytes), then attributes; null when it carries no address.</summary>
    /// <exception cref="NetlinkException">Truncated or malformed.</exception>
    internal static AddressInfo? ParseAddress(ReadOnlyMemory<byte> body)
    {
        var header = Fixed(body, 8, "address");
        var prefix = header[1];
        var index = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        IPAddress? local = null, address = null;
        foreach (var a in NetlinkAttributes.Parse(body[8..]))
        {
            if (a.Type == IFA_LOCAL)
            {
                local = a.Address;
            }
            else if (a.Type == IFA_ADDRESS)
            {
                address = a.Address;
            }
        }

        return (local ?? address) is { } ip ? new AddressInfo(index, ip, prefix) : null;
    }

    /// <summary>An RTM_NEWROUTE body: rtmsg (12 bytes), then attributes; null unless a unicast route of the main table.</summary>
    /// <exception cref="NetlinkException">Truncated or malformed.</exception>
    internal static RouteInfo? ParseRoute(ReadOnlyMemory<byte> body)
    {
        var h = Fixed(body, 12, "route");
        var family = h[0] == 10 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        uint table = h[4];
        if (h[7] != RTN_UNICAST)
        {
            return null;
        }

        IPAddress? destination = null, gateway = null;
        int? link = null;
        foreach (var a in NetlinkAttributes.Parse(body[12..]))
        {
            switch (a.Type)
            {
                case RTA_DST:
                    destination = a.Address;
                    break;
                case RTA_GATEWAY:
                    gateway = a.Address;
                    break;
                case RTA_OIF:
                    link = (int)a.U32;
                    break;
                case RTA_TABLE:
                    table = a.U32;
                    break;
            }
        }

        return table == RT_TABLE_MAIN ? new RouteInfo(destination, h[1], gateway, link, family) : null;
    }

    private static ReadOnlySpan<byte> Fixed(ReadOnlyMemory<byte> body, int size, string what) =>
        body.Length >= size
            ? body.Span
            : throw new NetlinkException($"malformed {what} message: {body.Length} bytes, its header alone is {size}");

    /// <summary>Sets an interface up, and its MTU when given.</summary>
    public void SetUp(int index, uint? mtu = null)
    {
        var message = new NetlinkMessage(RTM_NEWLINK, 0).Header(IfInfo(index, IFF_UP, IFF_UP));
        if (mtu is { } m)
        {
            message.U32(IFLA_MTU, m);
        }

        socket.Execute(message, $"set interface #{index} up");
    }

    public void SetDown(int index) => socket.Execute(new NetlinkMessage(RTM_NEWLINK, 0).Header(IfInfo(index, 0, IFF_UP)), $"set interface #{index} down");

    /// <summary>Renames an interface; the kernel only renames one that is down.</summary>
    public void Rename(int index, string name) =>
        socket.Execute(new NetlinkMessage(RTM_NEWLINK, 0).Header(IfInfo(index, 0, 0)).String(IFLA_IFNAME, name), $"rename interface #{index} to {name}");

    /// <summary>Sets an interface's MAC address ("aa:bb:cc:dd:ee:ff").</summary>
    public void SetMac(int index, string mac) =>
        socket.Execute(new NetlinkMessage(RTM_NEWLINK, 0).Header(IfInfo(index, 0, 0)).Attribute(IFLA_ADDRESS, ParseMac(mac)), $"set the MAC of interface #{index} to {mac}");

    /// <summary>"aa:bb:cc:dd:ee:ff" as its six bytes.</summary>
    /// <exception cref="NetlinkException">Not a MAC address.</exception>
    public static byte[] ParseMac(string mac)
    {
        ArgumentNullException.ThrowIfNull(mac);
        var parts = mac.Split(':');
        var bytes = new byte[6];
        for (var i = 0; i < bytes.Length; i++)
        {
            if (parts.Length != 6 || parts[i].Length != 2 || !byte.TryParse(parts[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out bytes[i]))
            {
                throw new NetlinkException($"invalid MAC address \"{mac}\"");
            }
        }

        return bytes;
    }

    public void AddAddress(int index, IPAddress address, int prefixLength)
    {
        var bytes = address.GetAddressBytes();
        Span<byte> header = stackalloc byte[8];
        header.Clear();
        header[0] = Family(address);
        header[1] = (byte)prefixLength;
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], index);
        socket.Execute(
            new NetlinkMessage(RTM_NEWADDR, NetlinkSocket.NLM_F_CREATE | NetlinkSocket.NLM_F_REPLACE).Header(header)
                .Attribute(IFA_LOCAL, bytes).Attribute(IFA_ADDRESS, bytes),
            $"add address {address}/{prefixLength} to interface #{index}");
    }

    /// <summary>Adds (or replaces) a main-table unicast route out of <paramref name="index"/>.</summary>
    public void AddRoute(RouteInfo route, int index)
    {
        Span<byte> header = stackalloc byte[12];
        header.Clear();
        header[0] = route.Family == AddressFamily.InterNetworkV6 ? (byte)10 : (byte)2;
        header[1] = (byte)(route.IsDefault ? 0 : route.DestinationLength);
        header[4] = RT_TABLE_MAIN;
        header[5] = RTPROT_BOOT;
        header[6] = route.Gateway is null ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
        header[7] = RTN_UNICAST;
        var message = new NetlinkMessage(RTM_NEWROUTE, NetlinkSocket.NLM_F_CREATE | NetlinkSocket.NLM_F_REPLACE).Header(header);
        if (!route.IsDefault)
        {
            message.Attribute(RTA_DST, route.Destination!.GetAddressBytes());
        }

        if (route.Gateway is { } gateway)
        {
            message.Attribute(RTA_GATEWAY, gateway.GetAddressBytes());
        }

        message.U32(RTA_OIF, (uint)index);
        socket.Execute(message, $"add route {route}");
    }

    /// <summary>An ingress qdisc on the interface (kept if it already has one), so filters can act on what it receives.</summary>
    public void AddIngressQdisc(int index)
    {
        try
        {
            socket.Execute(
                new NetlinkMessage(RTM_NEWQDISC, NetlinkSocket.NLM_F_CREATE | NetlinkSocket.NLM_F_EXCL)
                    .Header(TcMsg(index, IngressHandle, TC_H_INGRESS, 0)).String(TCA_KIND, "ingress"),
                $"add an ingress qdisc to interface #{index}");
        }
        catch (NetlinkException e) when (e.Errno == EEXIST)
        {
        }
    }

    /// <summary>Removes the interface's ingress qdisc and with it every filter on it; none there is fine.</summary>
    public void DeleteIngressQdisc(int index)
    {
        const int ENOENT = 2, EINVAL = 22;
        try
        {
            socket.Execute(new NetlinkMessage(RTM_DELQDISC, 0).Header(TcMsg(index, IngressHandle, TC_H_INGRESS, 0)), $"remove the ingress qdisc of interface #{index}");
        }
        catch (NetlinkException e) when (e.Errno is ENOENT or EINVAL)
        {
        }
    }

    /// <summary>
    /// Everything <paramref name="from"/> receives is sent out of <paramref name="to"/> unchanged: a u32 filter that
    /// matches every frame with a mirred egress-redirect action (tc's "matchall" module is often missing; u32 is not).
    /// </summary>
    public void AddRedirect(int from, int to)
    {
        const uint priority = 1;
        const ushort ethPAllBigEndian = 0x0300; // htons(ETH_P_ALL)
        Span<byte> selector = stackalloc byte[32]; // struct tc_u32_sel with one key: mask 0, value 0 (all frames)
        selector.Clear();
        selector[0] = 1; // TC_U32_TERMINAL
        selector[2] = 1; // nkeys
        Span<byte> mirred = stackalloc byte[28]; // struct tc_mirred { tc_gen; int eaction; u32 ifindex; }
        mirred.Clear();
        BinaryPrimitives.WriteInt32LittleEndian(mirred[8..], TC_ACT_STOLEN);
        BinaryPrimitives.WriteInt32LittleEndian(mirred[20..], TCA_EGRESS_REDIR);
        BinaryPrimitives.WriteInt32LittleEndian(mirred[24..], to);

        var message = new NetlinkMessage(RTM_NEWTFILTER, NetlinkSocket.NLM_F_CREATE | NetlinkSocket.NLM_F_EXCL)
            .Header(TcMsg(from, 0, IngressHandle, (priority << 16) | ethPAllBigEndian))
            .String(TCA_KIND, "u32")
            .BeginNested(TCA_OPTIONS)
            .Attribute(TCA_U32_SEL, selector)
            .BeginNested(TCA_U32_ACT)
            .BeginNested(1)
            .String(TCA_ACT_KIND, "mirred")
            .BeginNested(TCA_ACT_OPTIONS)
            .Attribute(TCA_MIRRED_PARMS, mirred)
            .EndNested()
            .EndNested()
            .EndNested()
            .EndNested();
        socket.Execute(message, $"redirect what interface #{from} receives to interface #{to}");
    }

    public static string FormatMac(ReadOnlySpan<byte> bytes) =>
        string.Join(':', bytes.ToArray().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    private static byte Family(IPAddress address) => address.AddressFamily == AddressFamily.InterNetworkV6 ? (byte)10 : (byte)2;

    private static byte[] IfInfo(int index, uint flags, uint change)
    {
        var header = new byte[16];
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), index);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), change);
        return header;
    }

    private static byte[] TcMsg(int index, uint handle, uint parent, uint info)
    {
        var header = new byte[20];
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), index);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), parent);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(16), info);
        return header;
    }
}
