using System.Buffers;
using System.Threading.Channels;

namespace ShimV2.Ttrpc;

/// <summary>A frame queued for the connection's writer loop.</summary>
/// <param name="Payload">The payload; or, when <paramref name="Framed"/>, the whole frame: header room first.</param>
/// <param name="Length">Payload bytes (when framed, after the header room).</param>
/// <param name="Framed">The buffer starts with <see cref="FrameHeader.Size"/> bytes for the header.</param>
/// <param name="Pooled">The buffer is rented from <see cref="ArrayPool{T}.Shared"/>; the writer returns it.</param>
internal readonly record struct OutgoingFrame(uint StreamId, FrameType Type, byte Flags, byte[] Payload, int Length, bool Framed, bool Pooled)
{
    public OutgoingFrame(uint streamId, FrameType type, byte flags, byte[] payload)
        : this(streamId, type, flags, payload, payload.Length, Framed: false, Pooled: false)
    {
    }
}

/// <summary>
/// The single writer of a connection: frames are queued from any thread through a channel and written in order
/// by one loop, so frames never interleave and queue order is wire order.
/// </summary>
internal sealed class FrameWriter
{
    // Payloads up to this size are copied next to their header and written with one call.
    private const int CoalesceLimit = 64 * 1024;

    private readonly Channel<OutgoingFrame> _queue = Channel.CreateUnbounded<OutgoingFrame>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = false, AllowSynchronousContinuations = false });

    /// <summary>Queues a frame; false once the writer has been completed.</summary>
    public bool TryEnqueue(OutgoingFrame frame) => _queue.Writer.TryWrite(frame);

    /// <summary>No more frames: the loop writes what is queued, then ends.</summary>
    public void Complete() => _queue.Writer.TryComplete();

    /// <summary>Writes queued frames until <see cref="Complete"/> and the queue is empty.</summary>
    public async Task RunAsync(Stream stream, CancellationToken cancellationToken)
    {
        var reader = _queue.Reader;
        var header = new byte[FrameHeader.Size];
        while (await reader.WaitToReadAsync(cancellationToken))
        {
            while (reader.TryRead(out var frame))
            {
                var h = new FrameHeader((uint)frame.Length, frame.StreamId, (byte)frame.Type, frame.Flags);
                if (frame.Framed)
                {
                    h.Write(frame.Payload);
                    await stream.WriteAsync(frame.Payload.AsMemory(0, FrameHeader.Size + frame.Length), cancellationToken);
                    if (frame.Pooled)
                    {
                        ArrayPool<byte>.Shared.Return(frame.Payload);
                    }
                }
                else if (frame.Payload.Length <= CoalesceLimit)
                {
                    var size = FrameHeader.Size + frame.Payload.Length;
                    var buffer = ArrayPool<byte>.Shared.Rent(size);
                    try
                    {
                        h.Write(buffer);
                        frame.Payload.CopyTo(buffer.AsSpan(FrameHeader.Size));
                        await stream.WriteAsync(buffer.AsMemory(0, size), cancellationToken);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }
                else
                {
                    h.Write(header);
                    await stream.WriteAsync(header, cancellationToken);
                    await stream.WriteAsync(frame.Payload, cancellationToken);
                }
            }

            await stream.FlushAsync(cancellationToken);
        }
    }
}
