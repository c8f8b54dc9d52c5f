using System.Buffers.Binary;
using System.Text;

namespace ShimV2.Netlink;

/// <summary>
/// Builds one netlink message: nlmsghdr, the family header, then attributes (struct nlattr: u16 length, u16 type,
/// payload padded to 4 bytes), nested attributes included. Host byte order (little-endian) unless a field says so.
/// </summary>
public sealed class NetlinkMessage
{
    public const int HeaderSize = 16;

    private readonly List<byte> _bytes = [];
    private readonly Stack<int> _nests = new();

    public NetlinkMessage(ushort type, ushort flags)
    {
        Type = type;
        Flags = flags;
        _bytes.AddRange(new byte[HeaderSize]);
    }

    public ushort Type { get; }

    public ushort Flags { get; }

    /// <summary>Raw bytes of the family header (ifinfomsg, ifaddrmsg, rtmsg, tcmsg...), already laid out.</summary>
    public NetlinkMessage Header(ReadOnlySpan<byte> header)
    {
        _bytes.AddRange(header.ToArray());
        Align();
        return this;
    }

    public NetlinkMessage Attribute(ushort type, ReadOnlySpan<byte> payload)
    {
        Span<byte> head = stackalloc byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(head, (ushort)(4 + payload.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(head[2..], type);
        _bytes.AddRange(head.ToArray());
        _bytes.AddRange(payload.ToArray());
        Align();
        return this;
    }

    public NetlinkMessage U32(ushort type, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        return Attribute(type, b);
    }

    /// <summary>A NUL-terminated string attribute (IFLA_IFNAME, TCA_KIND...).</summary>
    public NetlinkMessage String(ushort type, string value) => Attribute(type, Encoding.ASCII.GetBytes(value + "\0"));

    public NetlinkMessage BeginNested(ushort type)
    {
        _nests.Push(_bytes.Count);
        return Attribute(type, []);
    }

    public NetlinkMessage EndNested()
    {
        var start = _nests.Pop();
        var length = (ushort)(_bytes.Count - start);
        _bytes[start] = (byte)length;
        _bytes[start + 1] = (byte)(length >> 8);
        return this;
    }

    /// <summary>The message with its header filled in (flags: <see cref="Flags"/> unless given).</summary>
    public byte[] Encode(uint sequence, ushort? flags = null)
    {
        if (_nests.Count > 0)
        {
            throw new InvalidOperationException("a nested attribute was not closed");
        }

        var bytes = _bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)bytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), Type);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), flags ?? Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), sequence);
        return bytes;
    }

    private void Align()
    {
        while (_bytes.Count % 4 != 0)
        {
            _bytes.Add(0);
        }
    }
}

/// <summary>One attribute of a received message; nested ones parse further with <see cref="NetlinkAttributes.Parse"/>.</summary>
public readonly record struct NetlinkAttribute(ushort Type, ReadOnlyMemory<byte> Payload)
{
    /// <exception cref="NetlinkException">The payload is shorter than 4 bytes.</exception>
    public uint U32 => Payload.Length >= 4
        ? BinaryPrimitives.ReadUInt32LittleEndian(Payload.Span)
        : throw new NetlinkException($"malformed attribute {Type}: {Payload.Length} bytes where a u32 was expected");

    /// <exception cref="NetlinkException">The payload is neither an IPv4 (4 bytes) nor an IPv6 address (16).</exception>
    public System.Net.IPAddress Address => Payload.Length is 4 or 16
        ? new System.Net.IPAddress(Payload.Span)
        : throw new NetlinkException($"malformed attribute {Type}: {Payload.Length} bytes where an IP address was expected");

    public string String => Encoding.ASCII.GetString(Payload.Span.TrimEnd((byte)0));
}

public static class NetlinkAttributes
{
    /// <summary>NLA_F_NESTED | NLA_F_NET_BYTEORDER: flags in nla_type, not part of the type.</summary>
    private const ushort TypeMask = 0x3FFF;

    public static List<NetlinkAttribute> Parse(ReadOnlyMemory<byte> data)
    {
        var list = new List<NetlinkAttribute>();
        var offset = 0;
        while (data.Length - offset >= 4)
        {
            var span = data.Span[offset..];
            var length = BinaryPrimitives.ReadUInt16LittleEndian(span);
            var type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(span[2..]) & TypeMask);
            if (length < 4 || length > data.Length - offset)
            {
                throw new NetlinkException($"malformed attribute (length {length} at offset {offset})");
            }

            list.Add(new NetlinkAttribute(type, data.Slice(offset + 4, length - 4)));
            offset += (length + 3) & ~3;
        }

        return list;
    }
}
