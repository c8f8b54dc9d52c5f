using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace ShimV2.Cli.Check;

/// <summary>
/// One unary gRPC call over cleartext HTTP/2 on a unix socket: just enough of RFC 9113 for `check` to ask containerd
/// its version. Grpc.Net.Client would bring HttpClient, its HTTP/2 and TLS stacks and the OpenSSL interop into this
/// NativeAOT binary, which is also every pod's long-lived daemon: 2 MB of code and types, and 1.5 MiB of the daemon's
/// resident set, for one call an operator makes by hand.
/// The request's headers are HPACK literals (no Huffman, no dynamic table). The answer's headers are not decoded
/// (the server's HPACK may use both): the message comes from the DATA frames, and a stream that ends without one is
/// an error.
/// </summary>
internal static class GrpcUnaryCall
{
    private const byte Data = 0x0, Headers = 0x1, RstStream = 0x3, Settings = 0x4, Ping = 0x6, GoAway = 0x7;
    private const byte EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8;
    private const int StreamId = 1;

    /// <summary>More than any answer `check` asks for; a larger frame means the peer is not what we think.</summary>
    private const int MaxFrame = 1 << 20;

    private static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    /// <summary>Calls <paramref name="method"/> ("/package.Service/Method") with a serialized request message and
    /// returns the serialized response message.</summary>
    /// <exception cref="IOException">The peer closed, reset the stream, went away, or answered without a message.</exception>
    /// <exception cref="SocketException">Nothing listens on <paramref name="socketPath"/>.</exception>
    public static async Task<byte[]> CallAsync(string socketPath, string method, byte[] request, CancellationToken ct)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
        await using var stream = new NetworkStream(socket, ownsSocket: false);

        var output = new MemoryStream();
        output.Write(Preface);
        WriteFrame(output, Settings, 0, 0, []);
        WriteFrame(output, Headers, EndHeaders, StreamId, RequestHeaders(method));
        var message = new byte[5 + request.Length]; // gRPC's framing: not compressed, big-endian length
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(1), (uint)request.Length);
        request.CopyTo(message, 5);
        WriteFrame(output, Data, EndStream, StreamId, message);
        await stream.WriteAsync(output.ToArray(), ct);

        var answer = new MemoryStream();
        var header = new byte[9];
        while (true)
        {
            await stream.ReadExactlyAsync(header, ct);
            var length = (header[0] << 16) | (header[1] << 8) | header[2];
            var (type, flags) = (header[3], header[4]);
            var streamId = (int)(BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(5)) & 0x7fffffff);
            if (length > MaxFrame)
            {
                throw new IOException($"the peer sent a {length}-byte HTTP/2 frame: not a gRPC server?");
            }

            var payload = new byte[length];
            await stream.ReadExactlyAsync(payload, ct);
            switch (type)
            {
                case Settings when (flags & Ack) == 0:
                    await stream.WriteAsync(Frame(Settings, Ack, 0, []), ct);
                    break;
                case Ping when (flags & Ack) == 0:
                    await stream.WriteAsync(Frame(Ping, Ack, 0, payload), ct);
                    break;
                case Data when streamId == StreamId:
                    var padding = (flags & Padded) != 0 && length > 0 ? payload[0] + 1 : 0;
                    answer.Write(payload, (flags & Padded) != 0 ? 1 : 0, length - padding);
                    break;
                case RstStream when streamId == StreamId:
                    throw new IOException($"the server reset the call (HTTP/2 error {ErrorCode(payload)})");
                case GoAway:
                    throw new IOException($"the server closed the connection (HTTP/2 GOAWAY, error {ErrorCode(payload.AsSpan(4))})");
            }

            if ((type is Data or Headers) && streamId == StreamId && (flags & EndStream) != 0)
            {
                return Message(answer.ToArray(), method);
            }
        }
    }

    private static byte[] Message(byte[] answer, string method)
    {
        if (answer.Length < 5)
        {
            // A gRPC error arrives as trailers only (grpc-status, grpc-message), which this client does not decode.
            throw new IOException($"{method} answered without a message (a gRPC error)");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(answer.AsSpan(1));
        if (answer[0] != 0 || length != answer.Length - 5)
        {
            throw new IOException($"{method} answered with a compressed or malformed message");
        }

        return answer[5..];
    }

    private static uint ErrorCode(ReadOnlySpan<byte> payload) => payload.Length >= 4 ? BinaryPrimitives.ReadUInt32BigEndian(payload) : 0;

    /// <summary>The request's header block: static-table names (RFC 7541 appendix A) with literal values.</summary>
    private static byte[] RequestHeaders(string method)
    {
        var block = new MemoryStream();
        block.WriteByte(0x80 | 3); // :method POST, indexed
        block.WriteByte(0x80 | 6); // :scheme http, indexed
        WriteLiteral(block, 4, method); // :path
        WriteLiteral(block, 1, "containerd"); // :authority, unused on a unix socket
        WriteLiteral(block, 31, "application/grpc"); // content-type
        block.WriteByte(0); // te: trailers, a new name (gRPC servers expect it)
        WriteString(block, "te");
        WriteString(block, "trailers");
        return block.ToArray();
    }

    /// <summary>A literal header field without indexing, its name from the static table.</summary>
    private static void WriteLiteral(MemoryStream block, int nameIndex, string value)
    {
        WriteInteger(block, 0x00, 4, nameIndex);
        WriteString(block, value);
    }

    private static void WriteString(MemoryStream block, string value)
    {
        var bytes = Encoding.ASCII.GetBytes(value);
        WriteInteger(block, 0x00, 7, bytes.Length); // high bit clear: not Huffman-coded
        block.Write(bytes);
    }

    /// <summary>An HPACK integer with an N-bit prefix (RFC 7541 5.1).</summary>
    private static void WriteInteger(MemoryStream block, byte pattern, int prefixBits, int value)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            block.WriteByte((byte)(pattern | value));
            return;
        }

        block.WriteByte((byte)(pattern | max));
        for (value -= max; value >= 0x80; value >>= 7)
        {
            block.WriteByte((byte)((value & 0x7f) | 0x80));
        }

        block.WriteByte((byte)value);
    }

    private static void WriteFrame(MemoryStream output, byte type, byte flags, int streamId, ReadOnlySpan<byte> payload) =>
        output.Write(Frame(type, flags, streamId, payload));

    private static byte[] Frame(byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(5), (uint)streamId);
        payload.CopyTo(frame.AsSpan(9));
        return frame;
    }
}
