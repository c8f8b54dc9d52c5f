using Google.Protobuf;
using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent.Stdio;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

public class WriteStreamParserTests
{
    [Theory]
    [InlineData("c1", "", 0, 0UL)]
    [InlineData("c1", "e1", 1, 1UL)]
    [InlineData("pod-ü", "exec", 300, 5_000_000_000UL)]
    [InlineData("c", "e", 1 << 20, 1UL << 20)]
    public void WriteStdin_requests_read_as_the_protobuf_parser_reads_them(string container, string exec, int data, ulong offset)
    {
        var sent = new WriteStreamRequest
        {
            ContainerId = container,
            ExecId = exec,
            Data = ByteString.CopyFrom(Enumerable.Range(0, data).Select(i => (byte)(i * 7)).ToArray()),
            Offset = offset,
        };

        Assert.Equal(sent, WriteStreamParser.Parse(sent.ToByteArray()));
    }

    [Fact]
    public void Unknown_fields_are_skipped_and_the_data_is_the_request_bytes_themselves()
    {
        // 9: varint 300, 1: "c", 10: fixed64, 3: "xyz", 11: fixed32, 2: "e".
        byte[] payload = [0x48, 0xAC, 0x02, 0x0A, 0x01, (byte)'c', 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x1A, 0x03, (byte)'x', (byte)'y', (byte)'z',
            0x5D, 1, 2, 3, 4, 0x12, 0x01, (byte)'e'];

        var request = WriteStreamParser.Parse(payload);

        Assert.Equal("c", request.ContainerId);
        Assert.Equal("e", request.ExecId);
        Assert.Equal("xyz"u8.ToArray(), request.Data.ToByteArray());
        payload[17] = (byte)'X';
        Assert.Equal("Xyz"u8.ToArray(), request.Data.ToByteArray());
    }

    [Theory]
    [InlineData(new byte[] { 0x1A, 0x05, 1, 2 })]       // data longer than the payload
    [InlineData(new byte[] { 0x0A })]                   // a tag and nothing else
    [InlineData(new byte[] { 0x1B, 0x00 })]             // wire type 3 (groups are not proto3)
    [InlineData(new byte[] { 0x48, 0xFF, 0xFF })]       // a varint cut short
    public void A_malformed_request_is_an_invalid_argument(byte[] payload)
    {
        var e = Assert.Throws<TtrpcException>(() => WriteStreamParser.Parse(payload));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
    }
}
