using ShimV2.Netlink;

namespace ShimV2.Fuzz;

/// <summary>
/// A datagram from the kernel's rtnetlink socket: split into messages, errors read, and every link, address and
/// route message parsed as the shim and the agent read them when they list a namespace's network.
/// </summary>
internal static class NetlinkTargets
{
    public static void Messages(ReadOnlySpan<byte> data)
    {
        try
        {
            foreach (var reply in NetlinkDatagram.Split(data.ToArray(), "fuzz"))
            {
                switch (reply.Type)
                {
                    case NetlinkDatagram.NLMSG_ERROR:
                        NetlinkDatagram.ErrorCode(reply, "fuzz");
                        break;
                    case 16:
                        _ = Rtnetlink.ParseLink(reply.Body).ToString();
                        break;
                    case 20:
                        _ = Rtnetlink.ParseAddress(reply.Body)?.ToString();
                        break;
                    case 24:
                        _ = Rtnetlink.ParseRoute(reply.Body)?.ToString();
                        break;
                    default:
                        NetlinkAttributes.Parse(reply.Body);
                        break;
                }
            }
        }
        catch (NetlinkException)
        {
        }
    }
}
