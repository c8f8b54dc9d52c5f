using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace ShimV2.Netlink;

/// <summary>A netlink request failed: the kernel's errno, or a malformed answer.</summary>
public sealed class NetlinkException : Exception
{
    public NetlinkException(string message)
        : base(message)
    {
    }

    public NetlinkException(string message, int errno)
        : base($"{message}: {Marshal.GetPInvokeErrorMessage(errno)}")
    {
        Errno = errno;
    }

    public NetlinkException()
    {
    }

    public NetlinkException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public int Errno { get; }
}

/// <summary>
/// A NETLINK_ROUTE socket, used synchronously by one thread. It belongs to the network namespace of the thread
/// that opened it: open it on a thread that joined the pod's namespace to work there.
/// </summary>
public sealed partial class NetlinkSocket : IDisposable
{
    internal const ushort NLM_F_REQUEST = 0x1;
    internal const ushort NLM_F_ACK = 0x4;
    internal const ushort NLM_F_EXCL = 0x200;
    internal const ushort NLM_F_CREATE = 0x400;
    internal const ushort NLM_F_REPLACE = 0x100;
    internal const ushort NLM_F_DUMP = 0x300;
    internal const ushort NLM_F_MULTI = 0x2;

    private const int AF_NETLINK = 16;
    private const int SOCK_RAW = 3;
    private const int SOCK_CLOEXEC = 0x80000;
    private const int NETLINK_ROUTE = 0;
    private const int EINTR = 4;

    private readonly int _fd;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private uint _sequence;

    public NetlinkSocket()
    {
        _fd = Socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (_fd < 0)
        {
            throw new NetlinkException("open a netlink socket", Marshal.GetLastPInvokeError());
        }

        // sockaddr_nl with pid 0: the kernel assigns one. Needed so that replies are addressed to us.
        Span<byte> address = stackalloc byte[12];
        address.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(address, AF_NETLINK);
        if (Bind(_fd, address, address.Length) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            _ = Close(_fd);
            throw new NetlinkException("bind a netlink socket", errno);
        }
    }

    /// <summary>Sends a request and waits for the kernel's acknowledgement; throws with the errno it answers.</summary>
    public void Execute(NetlinkMessage message, string what)
    {
        var sequence = Send(message, (ushort)(message.Flags | NLM_F_REQUEST | NLM_F_ACK));
        foreach (var _ in Receive(sequence, what, dump: false))
        {
        }
    }

    /// <summary>Sends a dump request; returns each answer's (type, body after nlmsghdr).</summary>
    public List<(ushort Type, ReadOnlyMemory<byte> Body)> Dump(NetlinkMessage message, string what)
    {
        var sequence = Send(message, (ushort)(message.Flags | NLM_F_REQUEST | NLM_F_DUMP));
        return [.. Receive(sequence, what, dump: true)];
    }

    public void Dispose() => _ = Close(_fd);

    private uint Send(NetlinkMessage message, ushort flags)
    {
        var sequence = ++_sequence;
        var full = message.Encode(sequence, flags);
        while (true)
        {
            var n = SendTo(_fd, full, (nuint)full.Length, 0);
            if (n >= 0)
            {
                return sequence;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR)
            {
                throw new NetlinkException("send a netlink request", errno);
            }
        }
    }

    private IEnumerable<(ushort Type, ReadOnlyMemory<byte> Body)> Receive(uint sequence, string what, bool dump)
    {
        while (true)
        {
            var n = (int)Recv(_fd, _buffer, (nuint)_buffer.Length, 0);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR)
                {
                    continue;
                }

                throw new NetlinkException($"{what}: receive", errno);
            }

            foreach (var reply in NetlinkDatagram.Split(_buffer.AsMemory(0, n).ToArray(), what))
            {
                if (reply.Sequence != sequence)
                {
                    continue; // a late answer to an earlier request
                }

                switch (reply.Type)
                {
                    case NetlinkDatagram.NLMSG_ERROR:
                        var error = NetlinkDatagram.ErrorCode(reply, what);
                        if (error != 0)
                        {
                            throw new NetlinkException(what, -error);
                        }

                        if (!dump)
                        {
                            yield break;
                        }

                        break;
                    case NetlinkDatagram.NLMSG_DONE:
                        yield break;
                    default:
                        yield return (reply.Type, reply.Body);
                        break;
                }
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "bind", SetLastError = true)]
    private static partial int Bind(int fd, ReadOnlySpan<byte> address, int length);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint SendTo(int fd, byte[] buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(int fd, byte[] buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
