using System.Buffers.Binary;
using ShimV2.GuestAgent.Transport;

namespace ShimV2.GuestAgent.Tests;

public class FrameSplitterTests
{
    [Fact]
    public void Frames_of_one_client_pass_through_unchanged_however_they_are_chunked()
    {
        var input = Concat(Frame(1, 1, 5), Frame(3, 1, 0), Frame(5, 1, 70_000), Frame(5, 3, 3), Frame(7, 1, 1));
        foreach (var chunk in new[] { 1, 3, 10, 11, 4096, input.Length })
        {
            var splitter = new FrameSplitter();
            var output = new List<byte>();
            var buffer = new byte[7];
            for (var offset = 0; offset < input.Length; offset += chunk)
            {
                splitter.Feed(input.AsSpan(offset, Math.Min(chunk, input.Length - offset)));
                int n;
                while ((n = splitter.Take(buffer)) > 0)
                {
                    output.AddRange(buffer.AsSpan(0, n));
                }
            }

            Assert.False(splitter.NewClient);
            Assert.Equal(input, output.ToArray());
        }
    }

    [Fact]
    public void A_request_whose_stream_id_does_not_increase_starts_a_new_connection()
    {
        var old = Concat(Frame(1, 1, 4), Frame(3, 1, 2));
        var fresh = Concat(Frame(1, 1, 6), Frame(3, 1, 1));
        var splitter = new FrameSplitter();
        splitter.Feed(Concat(old, fresh));
        var buffer = new byte[1024];
        var n = splitter.Take(buffer);
        Assert.Equal(old, buffer[..n]);
        Assert.Equal(0, splitter.Take(buffer));
        Assert.True(splitter.NewClient);
        Assert.Equal(fresh, splitter.CarryOver);

        var next = new FrameSplitter(splitter.CarryOver);
        Assert.True(next.HasBuffered);
        n = next.Take(buffer);
        Assert.Equal(fresh, buffer[..n]);
        Assert.False(next.NewClient);
    }

    private static byte[] Frame(uint stream, byte type, int payload)
    {
        var frame = new byte[FrameSplitter.HeaderSize + payload];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)payload);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), stream);
        frame[8] = type;
        for (var i = 0; i < payload; i++)
        {
            frame[FrameSplitter.HeaderSize + i] = (byte)(stream + i);
        }

        return frame;
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}
