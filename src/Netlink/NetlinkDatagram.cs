using System.Buffers.Binary;

namespace ShimV2.Netlink;

/// <summary>One netlink message of a received datagram: its type, sequence number and the body after nlmsghdr.</summary>
internal readonly record struct NetlinkReply(ushort Type, uint Sequence, ReadOnlyMemory<byte> Body);

/// <summary>Splits what the kernel sent into messages, refusing lengths that do not fit (never reading past them).</summary>
internal static class NetlinkDatagram
{
    public const ushort NLMSG_ERROR = 2;
    public const ushort NLMSG_DONE = 3;

    /// <exception cref="NetlinkException">A message's length is shorter than its header or runs past the datagram.</exception>
    public static List<NetlinkReply> Split(ReadOnlyMemory<byte> data, string what)
    {
        var replies = new List<NetlinkReply>();
        var offset = 0;
        while (data.Length - offset >= NetlinkMessage.HeaderSize)
        {
            var span = data.Span[offset..];
            var length = BinaryPrimitives.ReadUInt32LittleEndian(span);
            var type = BinaryPrimitives.ReadUInt16LittleEndian(span[4..]);
            var sequence = BinaryPrimitives.ReadUInt32LittleEndian(span[8..]);
            if (length < NetlinkMessage.HeaderSize || length > (uint)(data.Length - offset))
            {
                throw new NetlinkException($"{what}: malformed netlink answer (length {length} at offset {offset})");
            }

            replies.Add(new NetlinkReply(type, sequence, data.Slice(offset + NetlinkMessage.HeaderSize, (int)length - NetlinkMessage.HeaderSize)));
            offset += ((int)length + 3) & ~3;
        }

        return replies;
    }

    /// <summary>The negated errno an NLMSG_ERROR carries (0: an acknowledgement).</summary>
    /// <exception cref="NetlinkException">The body is too short to hold one.</exception>
    public static int ErrorCode(NetlinkReply reply, string what) =>
        reply.Body.Length >= 4
            ? BinaryPrimitives.ReadInt32LittleEndian(reply.Body.Span)
            : throw new NetlinkException($"{what}: malformed netlink error ({reply.Body.Length} bytes)");
}
