using System.Buffers;
using System.Buffers.Binary;

namespace ShimV2.Ttrpc;

/// <summary>TTRPC message types (header byte 8).</summary>
internal enum FrameType : byte
{
    Request = 1,
    Response = 2,
    Data = 3,
}

/// <summary>The 10-byte big-endian frame header: uint32 length, uint32 stream id, uint8 type, uint8 flags.</summary>
internal readonly record struct FrameHeader(uint Length, uint StreamId, byte Type, byte Flags)
{
    public const int Size = 10;

    /// <summary>Default maximum payload size, as upstream ttrpc (4 MiB).</summary>
    public const int DefaultMaxPayload = 4 << 20;

    public static FrameHeader Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt32BigEndian(source),
        BinaryPrimitives.ReadUInt32BigEndian(source[4..]),
        source[8],
        source[9]);

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, Length);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], StreamId);
        destination[8] = Type;
        destination[9] = Flags;
    }
}

/// <summary>A received frame. <see cref="Oversized"/> frames had their payload drained and carry none.</summary>
/// <param name="Payload">
/// Its first <see cref="FrameHeader.Length"/> bytes are the payload. <paramref name="Pooled"/>: rented from
/// <see cref="ArrayPool{T}.Shared"/>, to be returned by whoever consumes the frame.
/// </param>
internal readonly record struct Frame(FrameHeader Header, byte[] Payload, bool Oversized, bool Pooled = false);

/// <summary>Reads frames from a stream, one at a time (the connection's single reader loop).</summary>
internal sealed class FrameReader
{
    private const int DrainChunk = 64 * 1024;
    private readonly Stream _stream;
    private readonly int _maxPayload;
    private readonly bool _pooled;
    private readonly byte[] _header = new byte[FrameHeader.Size];
    private byte[]? _drainBuffer;

    /// <param name="pooled">
    /// Read payloads of at least <see cref="PoolFrom"/> bytes into arrays rented from the shared pool: a server's
    /// large requests then reuse memory instead of touching fresh pages (expensive in an emulated guest).
    /// </param>
    public FrameReader(Stream stream, int maxPayload, bool pooled = false)
    {
        _stream = stream;
        _maxPayload = maxPayload;
        _pooled = pooled;
    }

    /// <summary>Smallest payload read into a pooled array.</summary>
    public const int PoolFrom = 32 * 1024;

    /// <summary>
    /// Reads the next frame; null at a clean end of stream (between frames). A frame whose payload exceeds the
    /// limit is drained and returned with <see cref="Frame.Oversized"/> set so the caller can answer it.
    /// </summary>
    /// <exception cref="EndOfStreamException">The stream ended inside a frame.</exception>
    public async ValueTask<Frame?> ReadAsync(CancellationToken cancellationToken)
    {
        var read = await _stream.ReadAtLeastAsync(_header, FrameHeader.Size, throwOnEndOfStream: false, cancellationToken);
        if (read == 0)
        {
            return null;
        }

        if (read < FrameHeader.Size)
        {
            throw new EndOfStreamException($"connection closed inside a frame header ({read} of {FrameHeader.Size} bytes)");
        }

        var header = FrameHeader.Read(_header);
        if (header.Length > (uint)_maxPayload)
        {
            await DrainAsync(header.Length, cancellationToken);
            return new Frame(header, [], Oversized: true);
        }

        var length = (int)header.Length;
        var pooled = _pooled && length >= PoolFrom;
        var payload = length == 0 ? [] : pooled ? ArrayPool<byte>.Shared.Rent(length) : GC.AllocateUninitializedArray<byte>(length);
        if (length > 0)
        {
            try
            {
                read = await _stream.ReadAtLeastAsync(payload.AsMemory(0, length), length, throwOnEndOfStream: false, cancellationToken);
            }
            catch when (pooled)
            {
                ArrayPool<byte>.Shared.Return(payload);
                throw;
            }

            if (read < length)
            {
                if (pooled)
                {
                    ArrayPool<byte>.Shared.Return(payload);
                }

                throw new EndOfStreamException(
                    $"connection closed inside the payload of stream {header.StreamId} ({read} of {length} bytes)");
            }
        }

        return new Frame(header, payload, Oversized: false, pooled);
    }

    private async ValueTask DrainAsync(uint length, CancellationToken cancellationToken)
    {
        _drainBuffer ??= new byte[DrainChunk];
        var remaining = (long)length;
        while (remaining > 0)
        {
            var chunk = (int)Math.Min(remaining, _drainBuffer.Length);
            var read = await _stream.ReadAsync(_drainBuffer.AsMemory(0, chunk), cancellationToken);
            if (read == 0)
            {
                throw new EndOfStreamException($"connection closed while discarding an oversized frame of {length} bytes");
            }

            remaining -= read;
        }
    }
}
