using Google.Protobuf;
using ShimV2.Ttrpc.Tests.Protos;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

/// <summary>Exact bytes on the wire, checked against hand-encoded frames.</summary>
public sealed class GoldenFrameTests(ITestOutputHelper output)
{
    [Fact]
    public void Header_is_ten_bytes_big_endian()
    {
        var header = new FrameHeader(0x01020304, 0x0A0B0C0D, 2, 0x05);
        var bytes = new byte[FrameHeader.Size];
        header.Write(bytes);
        Assert.Equal(new byte[] { 0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D, 0x02, 0x05 }, bytes);
        Assert.Equal(header, FrameHeader.Read(bytes));
    }

    [Fact]
    public async Task Client_request_frames_are_exact_and_use_odd_increasing_stream_ids()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b, new XunitLogger(output));

        var first = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest { Text = "hi" });
        byte[] expected =
        [
            0x00, 0x00, 0x00, 0x0E, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, // length 14, stream 1, request, flags 0
            0x0A, 0x03, (byte)'s', (byte)'v', (byte)'c',                 // 1: service
            0x12, 0x01, (byte)'M',                                       // 2: method
            0x1A, 0x04, 0x0A, 0x02, (byte)'h', (byte)'i',                // 3: payload = EchoRequest{text="hi"}
        ];
        Assert.Equal(expected, await peer.ReadRawFrameAsync());

        var second = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest(), new TtrpcCallOptions
        {
            Timeout = TimeSpan.FromSeconds(30),
            Metadata = [new("k", "v")],
        });
        byte[] expectedSecond =
        [
            0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, // length 22, stream 3
            0x0A, 0x03, (byte)'s', (byte)'v', (byte)'c',
            0x12, 0x01, (byte)'M',                                       // (3: empty payload is omitted, proto3)
            0x20, 0x80, 0xD8, 0x8E, 0xE1, 0x6F,                          // 4: timeout_nano = 30e9
            0x2A, 0x06, 0x0A, 0x01, (byte)'k', 0x12, 0x01, (byte)'v',    // 5: metadata {k: v}
        ];
        Assert.Equal(expectedSecond, await peer.ReadRawFrameAsync());

        // Answer the second call first, then the first one without a status field (missing status = OK).
        await peer.SendAsync([0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x02, 0x00, 0x0A, 0x00]);
        await peer.SendAsync([0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x12, 0x04, 0x0A, 0x02, (byte)'y', (byte)'o']);
        Assert.Equal("", (await second.Within()).Text);
        Assert.Equal("yo", (await first.Within()).Text);
    }

    [Fact]
    public async Task Client_maps_an_error_status_to_TtrpcException()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        var call = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        await peer.ReadRawFrameAsync();
        // Response{status{code 5, message "nf"}}
        await peer.SendAsync([0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0A, 0x06, 0x08, 0x05, 0x12, 0x02, (byte)'n', (byte)'f']);
        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        Assert.Equal(TtrpcStatusCode.NotFound, error.Code);
        Assert.Equal("nf", error.Message);
    }

    [Fact]
    public async Task Server_response_frames_are_exact()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        await peer.SendAsync(RawPeer.RequestFrame(1, "Echo", new EchoRequest { Text = "hi" }));
        byte[] ok =
        [
            0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, // length 8, stream 1, response, flags 0
            0x0A, 0x00,                                                  // 1: status {} (OK is sent explicitly)
            0x12, 0x04, 0x0A, 0x02, (byte)'h', (byte)'i',                // 2: payload = EchoResponse{text="hi"}
        ];
        Assert.Equal(ok, await peer.ReadRawFrameAsync());

        await peer.SendAsync(RawPeer.RequestFrame(3, "Fail", new EchoRequest { Text = "notfound" }));
        var message = "process already finished"u8.ToArray();
        byte[] status = [0x08, 0x05, 0x12, (byte)message.Length, .. message];
        byte[] response = [0x0A, (byte)status.Length, .. status];
        byte[] notFound = [0x00, 0x00, 0x00, (byte)response.Length, 0x00, 0x00, 0x00, 0x03, 0x02, 0x00, .. response];
        Assert.Equal(notFound, await peer.ReadRawFrameAsync());
    }

    [Fact]
    public async Task Server_decodes_a_hand_written_request_frame()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        var service = "ttrpc.test.v1.TestService"u8.ToArray(); // 25 bytes
        byte[] request =
        [
            0x00, 0x00, 0x00, 0x2E, 0x00, 0x00, 0x00, 0x07, 0x01, 0x00, // length 46, stream 7, request, flags 0
            0x0A, 0x19, .. service,                                      // 1: service (25 bytes)
            0x12, 0x04, (byte)'E', (byte)'c', (byte)'h', (byte)'o',      // 2: method
            0x1A, 0x04, 0x0A, 0x02, (byte)'h', (byte)'i',                // 3: payload = EchoRequest{text="hi"}
            0x20, 0x80, 0xB0, 0x9D, 0xC2, 0xDF, 0x01,                    // 4: timeout_nano = 60e9
        ];
        Assert.Equal(10 + 46, request.Length);
        await peer.SendAsync(request);
        byte[] expected =
        [
            0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x07, 0x02, 0x00,
            0x0A, 0x00, 0x12, 0x04, 0x0A, 0x02, (byte)'h', (byte)'i',
        ];
        Assert.Equal(expected, await peer.ReadRawFrameAsync());
    }

    [Fact]
    public async Task Server_answers_a_handler_crash_with_code_and_message_only()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        // Request{service, method "Fail", payload EchoRequest{text "boom"}}
        var service = "ttrpc.test.v1.TestService"u8.ToArray();
        byte[] request = [0x0A, 0x19, .. service, 0x12, 0x04, (byte)'F', (byte)'a', (byte)'i', (byte)'l',
            0x1A, 0x06, 0x0A, 0x04, (byte)'b', (byte)'o', (byte)'o', (byte)'m'];
        await peer.SendAsync([0x00, 0x00, 0x00, (byte)request.Length, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, .. request]);
        byte[] expected =
        [
            0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, // length 10, stream 1, response
            0x0A, 0x08, 0x08, 0x02, 0x12, 0x04, (byte)'b', (byte)'o', (byte)'o', (byte)'m', // status{2 Unknown, "boom"}, no payload
        ];
        Assert.Equal(expected, await peer.ReadRawFrameAsync());
    }

    [Fact]
    public async Task Server_answers_an_unknown_method_with_Unimplemented()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        var service = "ttrpc.test.v1.TestService"u8.ToArray();
        byte[] request = [0x0A, 0x19, .. service, 0x12, 0x04, (byte)'N', (byte)'o', (byte)'p', (byte)'e'];
        await peer.SendAsync([0x00, 0x00, 0x00, (byte)request.Length, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, .. request]);
        var message = "service ttrpc.test.v1.TestService: method Nope not implemented"u8.ToArray(); // 62 bytes
        byte[] status = [0x08, 0x0C, 0x12, 0x3E, .. message];                                 // code 12
        Assert.Equal(66, status.Length);
        byte[] expected = [0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0A, 0x42, .. status];
        Assert.Equal(expected, await peer.ReadRawFrameAsync());
    }

    [Fact]
    public async Task Client_decodes_a_status_with_details_and_reads_unknown_codes_as_Unknown()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        var call = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        await peer.ReadRawFrameAsync();
        // Response{status{code 99, message "x", details [Any{type_url "t"}]}}: details are skipped, 99 is unknown.
        await peer.SendAsync([0x00, 0x00, 0x00, 0x0C, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00,
            0x0A, 0x0A, 0x08, 0x63, 0x12, 0x01, (byte)'x', 0x1A, 0x03, 0x0A, 0x01, (byte)'t']);
        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        Assert.Equal(TtrpcStatusCode.Unknown, error.Code);
        Assert.Equal("x", error.Message);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(0, 1)]
    [InlineData(0, 200)]
    [InlineData(0, 1 << 20)]
    [InlineData(5, 0)]
    public void Server_answers_are_the_protobuf_envelope_byte_for_byte(int code, int blob)
    {
        var status = new Google.Rpc.Status { Code = code, Message = code == 0 ? "" : "failed" };
        var response = new EchoResponse { Text = blob > 0 ? "t" : "", Blob = ByteString.CopyFrom(new byte[blob]) };
        var expected = new Wire.Response { Status = status, Payload = response.ToByteString() }.ToByteArray();

        Assert.Equal(expected, Answer(status, response));
        Assert.Equal(new Wire.Response { Status = status }.ToByteArray(), Answer(status, null));

        static byte[] Answer(Google.Rpc.Status status, IMessage? response)
        {
            var frame = ServerConnection.SerializeResponse(1, status, response);
            Assert.True(frame.Framed);
            return frame.Payload.AsSpan(FrameHeader.Size, frame.Length).ToArray();
        }
    }

    [Theory]
    [InlineData(0, 0L, 0)]
    [InlineData(3, 30_000_000_000L, 2)]
    [InlineData(200, -1L, 0)]
    [InlineData(1 << 20, 5L, 1)]
    public void Requests_parse_as_protobuf_parses_them(int payload, long timeout, int metadata)
    {
        var request = new Wire.Request
        {
            Service = "svc",
            Method = "M",
            Payload = ByteString.CopyFrom(Enumerable.Range(0, payload).Select(i => (byte)i).ToArray()),
            TimeoutNano = timeout,
        };
        request.Metadata.Add(Enumerable.Range(0, metadata).Select(i => new Wire.KeyValue { Key = $"k{i}", Value = $"v{i}" }));
        var bytes = request.ToByteArray();

        var pooled = new byte[bytes.Length + 100]; // a pooled frame buffer is longer than the frame
        bytes.CopyTo(pooled, 0);
        Assert.Equal(Wire.Request.Parser.ParseFrom(bytes), ServerConnection.ParseRequest(pooled, bytes.Length));
    }

    [Fact]
    public void Request_fields_unknown_or_of_another_wire_type_are_skipped()
    {
        // 1: "s", 9 (unknown): varint 7, 2 as a varint (wrong type): 1, 3: "p", 2: "m", 7 (unknown): fixed32.
        byte[] bytes = [0x0A, 0x01, (byte)'s', 0x48, 0x07, 0x10, 0x01, 0x1A, 0x01, (byte)'p', 0x12, 0x01, (byte)'m', 0x3D, 1, 2, 3, 4];

        var request = ServerConnection.ParseRequest(bytes, bytes.Length);

        Assert.Equal("s", request.Service);
        Assert.Equal("m", request.Method);
        Assert.Equal("p"u8.ToArray(), request.Payload.ToByteArray());
    }
}
