using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace ShimV2.Transport;

/// <summary>An AF_VSOCK address (struct sockaddr_vm): a context id and a port.</summary>
/// <remarks>.NET has no vsock endpoint; sockets accept any EndPoint that serializes to a SocketAddress.</remarks>
public sealed class VsockEndPoint : EndPoint
{
    public const AddressFamily VsockFamily = (AddressFamily)40;

    /// <summary>VMADDR_CID_ANY: listen on every context id.</summary>
    public const uint AnyCid = 0xFFFFFFFF;

    /// <summary>VMADDR_CID_HOST: the host, as seen from a guest.</summary>
    public const uint HostCid = 2;

    /// <summary>VMADDR_CID_LOCAL: loopback within one kernel (vsock_loopback).</summary>
    public const uint LocalCid = 1;

    // struct sockaddr_vm { sa_family_t svm_family; unsigned short svm_reserved1; unsigned int svm_port;
    //                      unsigned int svm_cid; unsigned char svm_flags; unsigned char svm_zero[3]; }
    private const int SockaddrVmSize = 16;

    public VsockEndPoint(uint cid, uint port)
    {
        Cid = cid;
        Port = port;
    }

    public uint Cid { get; }

    public uint Port { get; }

    public override AddressFamily AddressFamily => VsockFamily;

    /// <summary>A stream socket in the vsock family, ready to connect or bind.</summary>
    public static Socket CreateSocket() => new(VsockFamily, SocketType.Stream, ProtocolType.Unspecified);

    public override SocketAddress Serialize()
    {
        var address = new SocketAddress(VsockFamily, SockaddrVmSize);
        Span<byte> raw = stackalloc byte[SockaddrVmSize];
        raw.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(raw, (ushort)VsockFamily);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[4..], Port);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[8..], Cid);
        // SocketAddress keeps the family in bytes 0-1 itself; copy the rest.
        for (var i = 2; i < SockaddrVmSize; i++)
        {
            address[i] = raw[i];
        }

        return address;
    }

    public override EndPoint Create(SocketAddress socketAddress)
    {
        ArgumentNullException.ThrowIfNull(socketAddress);
        if (socketAddress.Family != VsockFamily || socketAddress.Size < 12)
        {
            throw new ArgumentException("not an AF_VSOCK address", nameof(socketAddress));
        }

        Span<byte> raw = stackalloc byte[SockaddrVmSize];
        for (var i = 0; i < Math.Min(socketAddress.Size, SockaddrVmSize); i++)
        {
            raw[i] = socketAddress[i];
        }

        return new VsockEndPoint(
            BinaryPrimitives.ReadUInt32LittleEndian(raw[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(raw[4..]));
    }

    public override string ToString() => $"vsock://{Cid}:{Port}";

    public override bool Equals(object? obj) => obj is VsockEndPoint other && other.Cid == Cid && other.Port == Port;

    public override int GetHashCode() => HashCode.Combine(Cid, Port);
}
