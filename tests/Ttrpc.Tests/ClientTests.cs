using Google.Protobuf;
using ShimV2.Ttrpc.Tests.Protos;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

/// <summary>The client against a raw peer that plays the server byte by byte.</summary>
public sealed class ClientTests(ITestOutputHelper output)
{
    private const int MiB = 1 << 20;

    [Fact]
    public async Task Abort_keeps_the_first_reason_and_fails_every_pending_and_later_call()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b, new XunitLogger(output));
        var calls = Enumerable.Range(0, 3)
            .Select(i => client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest { Text = $"{i}" }))
            .ToList();
        for (var i = 0; i < calls.Count; i++)
        {
            await peer.ReadRawFrameAsync(); // all three are on the wire
        }

        var first = new IOException("first reason");
        client.Abort(first);
        client.Abort(new InvalidOperationException("second reason"));

        foreach (var call in calls)
        {
            var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
            Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
            Assert.Equal("first reason", error.Message);
            Assert.Same(first, error.InnerException);
        }

        var later = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest()).Within());
        Assert.Same(first, later.InnerException);
        await client.Completion.Within();
        Assert.True(await peer.ClosedAsync());
    }

    [Fact]
    public async Task Concurrent_aborts_agree_on_one_reason()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        var calls = Enumerable.Range(0, 20)
            .Select(_ => client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest()))
            .ToList();
        using var go = new ManualResetEventSlim();
        var aborts = Enumerable.Range(0, 8).Select(i => Task.Run(() =>
        {
            go.Wait();
            client.Abort(new IOException($"reason {i}"));
        })).ToList();
        go.Set();
        await Task.WhenAll(aborts).Within();

        var reasons = new HashSet<Exception>(ReferenceEqualityComparer.Instance);
        foreach (var call in calls)
        {
            var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
            reasons.Add(error.InnerException!);
        }

        Assert.Single(reasons);
    }

    [Fact]
    public async Task The_server_going_away_fails_pending_and_later_calls_with_Unavailable()
    {
        var (a, b) = await UnixListener.PairAsync();
        var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        var call = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        await peer.ReadRawFrameAsync();
        await peer.DisposeAsync();

        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
        Assert.Equal("ttrpc: connection closed", error.Message);
        await client.Completion.Within();
        var later = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest()).Within());
        Assert.Equal("ttrpc: connection closed", later.Message);
    }

    [Fact]
    public async Task A_response_frame_cut_short_fails_the_calls()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        var call = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        await peer.ReadRawFrameAsync();
        await peer.SendAsync([0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0A]); // 1 of 16 bytes
        peer.ShutdownSend();
        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
        Assert.Contains("inside the payload of stream 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Responses_for_unknown_streams_and_other_frame_types_are_ignored()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b, new XunitLogger(output));
        var call = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        await peer.ReadRawFrameAsync();
        await peer.SendAsync([0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x63, 0x02, 0x00, 0x0A, 0x00]); // stream 99
        await peer.SendAsync([0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x03, 0x01, 0xFF]);       // data, stream 1
        await peer.SendAsync([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x7F, 0x00]);             // type 0x7F
        await peer.SendAsync([0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x12, 0x04, 0x0A, 0x02, (byte)'o', (byte)'k']);
        Assert.Equal("ok", (await call.Within()).Text);
    }

    [Fact]
    public async Task An_oversized_response_fails_only_its_call()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        var big = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        await peer.ReadRawFrameAsync();
        var length = (4 * MiB) + 1;
        await peer.SendAsync(RawPeer.Frame((uint)length, 1, 2, 0, new byte[length]));
        var error = await Assert.ThrowsAsync<TtrpcException>(() => big.Within());
        Assert.Equal(TtrpcStatusCode.ResourceExhausted, error.Code);
        Assert.Equal($"message length {length} exceed maximum message size of {4 * MiB}", error.Message);

        var next = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        var (id, _, _, _) = await peer.ReadFrameAsync();
        Assert.Equal(3u, id);
        await peer.SendAsync([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x02, 0x00]); // empty Response = OK
        Assert.Equal("", (await next.Within()).Text);
    }

    [Fact]
    public async Task A_request_over_4_MiB_is_refused_without_touching_the_connection()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        var error = await Assert.ThrowsAsync<TtrpcException>(() => client.CallAsync<EchoRequest, EchoResponse>(
            "svc", "M", new EchoRequest { Blob = ByteString.CopyFrom(new byte[4 * MiB]) }).Within());
        Assert.Equal(TtrpcStatusCode.ResourceExhausted, error.Code);

        // The refused call used no stream id.
        var next = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        var (id, type, _, _) = await peer.ReadFrameAsync();
        Assert.Equal(1u, id);
        Assert.Equal(1, type);
        await peer.SendAsync([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00]);
        await next.Within();
    }

    [Fact]
    public async Task Cancelling_a_call_abandons_it_and_a_late_answer_is_ignored()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b, new XunitLogger(output));
        using var cancel = new CancellationTokenSource();
        var call = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest(), null, cancel.Token);
        await peer.ReadRawFrameAsync();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call.Within());

        await peer.SendAsync([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00]); // too late
        var next = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        var (id, _, _, _) = await peer.ReadFrameAsync();
        Assert.Equal(3u, id);
        await peer.SendAsync([0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x03, 0x02, 0x00, 0x12, 0x04, 0x0A, 0x02, (byte)'o', (byte)'k']);
        Assert.Equal("ok", (await next.Within()).Text);
    }

    [Fact]
    public async Task Connecting_to_a_missing_socket_is_Unavailable()
    {
        var path = Path.Combine(Path.GetTempPath(), $"ttrpc-missing-{Guid.NewGuid():N}.sock");
        var error = await Assert.ThrowsAsync<TtrpcException>(() => TtrpcClient.ConnectUnixAsync("unix://" + path).Within());
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectUnixAsync_accepts_a_unix_scheme()
    {
        await using var harness = Harness.Create(output);
        var (listener, _) = harness.Listen();
        await using var client = await TtrpcClient.ConnectUnixAsync("unix://" + listener.Path);
        var echo = await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Echo", new EchoRequest { Text = "u" }).Within();
        Assert.Equal("u", echo.Text);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public async Task A_non_positive_timeout_is_an_argument_error(int milliseconds)
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.CallAsync<EchoRequest, EchoResponse>(
            "svc", "M", new EchoRequest(), new TtrpcCallOptions { Timeout = TimeSpan.FromMilliseconds(milliseconds) }));
    }
}
