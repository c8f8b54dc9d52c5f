using System.Text;
using Google.Protobuf;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Stdio;

/// <summary>
/// Reads a WriteStdin request with its data left where it lies in the request frame (the protobuf parser copies
/// bytes fields): a MiB of stdin then goes from the host channel to the process's pipe without a copy here.
/// </summary>
internal static class WriteStreamParser
{
    /// <summary>The request; its data is valid as long as <paramref name="payload"/> is.</summary>
    /// <exception cref="TtrpcException">InvalidArgument: not a WriteStreamRequest.</exception>
    public static WriteStreamRequest Parse(ReadOnlyMemory<byte> payload)
    {
        var request = new WriteStreamRequest();
        var span = payload.Span;
        var at = 0;
        while (at < span.Length)
        {
            var tag = ReadVarint(span, ref at);
            switch ((int)(tag & 7))
            {
                case 0:
                    var value = ReadVarint(span, ref at);
                    if (tag >> 3 == WriteStreamRequest.OffsetFieldNumber)
                    {
                        request.Offset = value;
                    }

                    break;
                case 1:
                    at = Skip(span, at, 8);
                    break;
                case 5:
                    at = Skip(span, at, 4);
                    break;
                case 2:
                    var length = ReadVarint(span, ref at);
                    var start = at;
                    at = Skip(span, at, length);
                    var field = payload.Slice(start, at - start);
                    switch (tag >> 3)
                    {
                        case WriteStreamRequest.ContainerIdFieldNumber:
                            request.ContainerId = Encoding.UTF8.GetString(field.Span);
                            break;
                        case WriteStreamRequest.ExecIdFieldNumber:
                            request.ExecId = Encoding.UTF8.GetString(field.Span);
                            break;
                        case WriteStreamRequest.DataFieldNumber:
                            request.Data = UnsafeByteOperations.UnsafeWrap(field);
                            break;
                    }

                    break;
                default:
                    throw Invalid();
            }
        }

        return request;
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> span, ref int at)
    {
        ulong value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (at >= span.Length)
            {
                throw Invalid();
            }

            var b = span[at++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        throw Invalid();
    }

    private static int Skip(ReadOnlySpan<byte> span, int at, ulong count) =>
        count <= (ulong)(span.Length - at) ? at + (int)count : throw Invalid();

    private static TtrpcException Invalid() =>
        new(TtrpcStatusCode.InvalidArgument, "unmarshal WriteStreamRequest: malformed protobuf");
}
