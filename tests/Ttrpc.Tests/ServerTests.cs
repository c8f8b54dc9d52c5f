using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Ttrpc.Tests.Protos;
using ShimV2.Ttrpc.Wire;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

public sealed class ServerTests(ITestOutputHelper output)
{
    private const int MiB = 1 << 20;

    [Fact]
    public async Task Calls_are_served_concurrently_and_answered_out_of_order()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();

        var blocked = client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Block", new EchoRequest { Text = "a" });
        await harness.Service.Entered("a");
        // A later call completes while the first one is still blocked in its handler.
        var echo = await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Echo", new EchoRequest { Text = "b" });
        Assert.Equal("b", echo.Text);
        Assert.False(blocked.IsCompleted);

        harness.Service.Open("a");
        Assert.Equal("a", (await blocked.Within()).Text);
    }

    [Fact]
    public async Task A_fast_call_is_answered_on_the_wire_before_an_earlier_slow_one()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        await peer.SendAsync(RawPeer.RequestFrame(1, "Block", new EchoRequest { Text = "slow" }));
        await harness.Service.Entered("slow");
        await peer.SendAsync(RawPeer.RequestFrame(3, "Echo", new EchoRequest { Text = "fast" }));

        var (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(3u, id);
        Assert.Equal("fast", EchoResponse.Parser.ParseFrom(response.Payload).Text);

        harness.Service.Open("slow");
        (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(1u, id);
        Assert.Equal("slow", EchoResponse.Parser.ParseFrom(response.Payload).Text);
    }

    [Fact]
    public async Task Many_concurrent_calls_each_get_their_own_answer()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var calls = Enumerable.Range(0, 200).Select(i =>
        {
            var gate = $"g{i}";
            var call = client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, i % 2 == 0 ? "Block" : "Echo", new EchoRequest { Text = gate });
            return (gate, call);
        }).ToList();

        // Release the blocked ones in reverse order.
        for (var i = calls.Count - 1; i >= 0; i--)
        {
            harness.Service.Open(calls[i].gate);
        }

        foreach (var (gate, call) in calls)
        {
            Assert.Equal(gate, (await call.Within()).Text);
        }
    }

    [Fact]
    public async Task Unknown_service_or_method_is_Unimplemented()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();

        var method = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Nope", new EchoRequest()));
        Assert.Equal(TtrpcStatusCode.Unimplemented, method.Code);
        Assert.Equal($"service {TestService.Name}: method Nope not implemented", method.Message);

        var service = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>("no.such.Service", "Echo", new EchoRequest()));
        Assert.Equal(TtrpcStatusCode.Unimplemented, service.Code);
        Assert.Equal("service no.such.Service not implemented", service.Message);

        // A method of the descriptor without a handler is unimplemented too.
        var streaming = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Upload", new EchoRequest()));
        Assert.Equal(TtrpcStatusCode.Unimplemented, streaming.Code);
    }

    [Theory]
    [InlineData("notfound", TtrpcStatusCode.NotFound, "process already finished")]
    [InlineData("boom", TtrpcStatusCode.Unknown, "boom")]
    [InlineData("async", TtrpcStatusCode.Unknown, "disk on fire")]
    [InlineData("ok-code", TtrpcStatusCode.Unknown, "an error that claims to be OK")]
    [InlineData("cancelled", TtrpcStatusCode.Cancelled, "context canceled")]
    public async Task Handler_exceptions_map_to_a_status_without_stack_trace(string text, TtrpcStatusCode code, string message)
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var error = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, Empty>(TestService.Name, "Fail", new EchoRequest { Text = text }));
        Assert.Equal(code, error.Code);
        Assert.Equal(message, error.Message);
        Assert.DoesNotContain(" at ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_handler_returning_no_response_is_Internal()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var error = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Nothing", new EchoRequest()).Within());
        Assert.Equal(TtrpcStatusCode.Internal, error.Code);
        Assert.Equal($"ttrpc: {TestService.Name}/Nothing returned no response", error.Message);
    }

    public static TheoryData<TtrpcStatusCode> ErrorCodes() => new(System.Enum.GetValues<TtrpcStatusCode>().Where(c => c != TtrpcStatusCode.Ok));

    [Theory]
    [MemberData(nameof(ErrorCodes))]
    public async Task Status_codes_and_messages_round_trip(TtrpcStatusCode code)
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var message = $"failed: {code} — ünïcode: and colons";
        var error = await Assert.ThrowsAsync<TtrpcException>(() => client.CallAsync<EchoRequest, Empty>(
            TestService.Name, "Fail", new EchoRequest { Text = $"code:{(int)code}:{message}" }).Within());
        Assert.Equal(code, error.Code);
        Assert.Equal(message, error.Message);
    }

    [Fact]
    public async Task Metadata_and_deadline_reach_the_handler()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var plain = await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Context", new EchoRequest());
        Assert.Equal($"{TestService.Name}/Context deadline=none k=- n=0", plain.Text);

        var rich = await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Context", new EchoRequest(), new TtrpcCallOptions
        {
            Timeout = TimeSpan.FromMinutes(1),
            Metadata = [new("k", "v1"), new("k", "v2"), new("other", "x")],
        });
        Assert.Equal($"{TestService.Name}/Context deadline=set k=v1 n=3", rich.Text);
    }

    [Fact]
    public async Task The_handler_sees_the_deadline_from_timeout_nano()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        var sent = DateTimeOffset.UtcNow;
        await peer.SendAsync(RawPeer.RequestFrame(1, "Context", new EchoRequest(), timeoutNano: 60_000_000_000));
        var (_, response) = await peer.ReadResponseAsync();
        var received = DateTimeOffset.UtcNow;
        Assert.Equal(0, response.Status.Code);

        var (context, at) = Assert.Single(harness.Service.Contexts);
        var deadline = Assert.NotNull(context.Deadline);
        Assert.InRange(deadline, sent + TimeSpan.FromSeconds(60), received + TimeSpan.FromSeconds(60));
        Assert.False(context.IsDeadlineExceeded);
        Assert.True(context.CancellationToken.CanBeCanceled);
        Assert.True(at < deadline);
    }

    [Fact]
    public async Task No_timeout_nano_means_no_deadline()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        await peer.SendAsync(RawPeer.RequestFrame(1, "Context", new EchoRequest()));
        await peer.ReadResponseAsync();
        var (context, _) = Assert.Single(harness.Service.Contexts);
        Assert.Null(context.Deadline);
        Assert.False(context.IsDeadlineExceeded);
    }

    [Theory]
    [InlineData(50_000_000)]
    [InlineData(-1)] // as Go's context.WithTimeout: already expired
    public async Task Deadline_gives_DeadlineExceeded_and_cancels_the_handler(long timeoutNano)
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        await peer.SendAsync(RawPeer.RequestFrame(1, "Wait", new EchoRequest(), timeoutNano));
        var (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(1u, id);
        Assert.Equal((int)TtrpcStatusCode.DeadlineExceeded, response.Status.Code);
        Assert.Equal("context deadline exceeded", response.Status.Message);
        Assert.True(await harness.Service.WaitCancelled.Task.Within());
    }

    [Fact]
    public async Task Client_timeout_gives_DeadlineExceeded()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var error = await Assert.ThrowsAsync<TtrpcException>(() => client.CallAsync<EchoRequest, EchoResponse>(
            TestService.Name, "Wait", new EchoRequest(), new TtrpcCallOptions { Timeout = TimeSpan.FromMilliseconds(50) }));
        Assert.Equal(TtrpcStatusCode.DeadlineExceeded, error.Code);
        Assert.True(await harness.Service.WaitCancelled.Task.Within());
        // The connection is still usable.
        Assert.Equal("x", (await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Echo", new EchoRequest { Text = "x" })).Text);
    }

    [Fact]
    public async Task Oversized_request_frame_is_answered_ResourceExhausted_and_the_connection_goes_on()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        var length = (4 * MiB) + 1;
        await peer.SendAsync(RawPeer.Frame((uint)length, 1, 1, 0, new byte[length]));
        var (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(1u, id);
        Assert.Equal((int)TtrpcStatusCode.ResourceExhausted, response.Status.Code);
        Assert.Equal($"message length {length} exceed maximum message size of {4 * MiB}", response.Status.Message);

        await peer.SendAsync(RawPeer.RequestFrame(3, "Echo", new EchoRequest { Text = "still here" }));
        (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(3u, id);
        Assert.Equal(0, response.Status.Code);
        Assert.Equal("still here", EchoResponse.Parser.ParseFrom(response.Payload).Text);
    }

    [Fact]
    public async Task A_request_of_exactly_4_MiB_is_served()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        var request = new Request { Service = TestService.Name, Method = "Fail" };
        var blob = (4 * MiB) - request.CalculateSize() - 16;
        while (true)
        {
            request.Payload = new EchoRequest { Blob = ByteString.CopyFrom(new byte[blob]) }.ToByteString();
            if (request.CalculateSize() >= 4 * MiB)
            {
                break;
            }

            blob++;
        }

        var bytes = request.ToByteArray();
        Assert.Equal(4 * MiB, bytes.Length);
        await peer.SendAsync(RawPeer.Frame(1, 1, bytes));
        var (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(1u, id);
        Assert.Equal(0, response.Status.Code);
    }

    [Fact]
    public async Task Oversized_response_is_ResourceExhausted_and_the_connection_goes_on()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var error = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Big", new EchoRequest { Size = 4 * MiB }));
        Assert.Equal(TtrpcStatusCode.ResourceExhausted, error.Code);

        var ok = await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Big", new EchoRequest { Size = 3 * MiB });
        Assert.Equal(3 * MiB, ok.Blob.Length);
    }

    [Fact]
    public async Task Malformed_request_protobuf_is_InvalidArgument_and_the_connection_goes_on()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        await peer.SendAsync(RawPeer.Frame(1, 1, [0x0A, 0x7F, 0x01])); // field 1 claims 127 bytes, has 1
        var (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(1u, id);
        Assert.Equal((int)TtrpcStatusCode.InvalidArgument, response.Status.Code);
        Assert.StartsWith("unmarshal request error: ", response.Status.Message);

        // A valid envelope whose payload is not the method's input type.
        await peer.SendAsync(RawPeer.Frame(3, 1, new Request
        {
            Service = TestService.Name,
            Method = "Echo",
            Payload = ByteString.CopyFrom(0xFF, 0xFF, 0xFF),
        }.ToByteArray()));
        (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(3u, id);
        Assert.Equal((int)TtrpcStatusCode.InvalidArgument, response.Status.Code);

        await peer.SendAsync(RawPeer.RequestFrame(5, "Echo", new EchoRequest { Text = "ok" }));
        (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(5u, id);
        Assert.Equal(0, response.Status.Code);
    }

    [Fact]
    public async Task Even_and_non_increasing_stream_ids_are_rejected_like_ttrpc()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();

        await peer.SendAsync(RawPeer.RequestFrame(2, "Echo", new EchoRequest()));
        var (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(2u, id);
        Assert.Equal((int)TtrpcStatusCode.InvalidArgument, response.Status.Code);
        Assert.Equal("StreamID must be odd for client initiated streams", response.Status.Message);

        await peer.SendAsync(RawPeer.RequestFrame(5, "Echo", new EchoRequest { Text = "five" }));
        (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(5u, id);
        Assert.Equal(0, response.Status.Code);

        foreach (var reused in new uint[] { 5, 3 })
        {
            await peer.SendAsync(RawPeer.RequestFrame(reused, "Echo", new EchoRequest()));
            (id, response) = await peer.ReadResponseAsync();
            Assert.Equal(reused, id);
            Assert.Equal((int)TtrpcStatusCode.InvalidArgument, response.Status.Code);
            Assert.Equal("StreamID cannot be re-used and must increment", response.Status.Message);
        }

        await peer.SendAsync(RawPeer.RequestFrame(7, "Echo", new EchoRequest { Text = "seven" }));
        (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(7u, id);
        Assert.Equal("seven", EchoResponse.Parser.ParseFrom(response.Payload).Text);
    }

    [Fact]
    public async Task Unknown_frame_types_are_ignored_and_data_frames_rejected()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        await peer.SendAsync(RawPeer.Frame(1, 0x7F, [1, 2, 3]));
        await peer.SendAsync(RawPeer.Frame(3, 3, [1, 2, 3]));
        var (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(3u, id);
        Assert.Equal((int)TtrpcStatusCode.InvalidArgument, response.Status.Code);

        await peer.SendAsync(RawPeer.RequestFrame(5, "Echo", new EchoRequest { Text = "ok" }));
        (id, response) = await peer.ReadResponseAsync();
        Assert.Equal(5u, id);
        Assert.Equal(0, response.Status.Code);
    }

    [Fact]
    public async Task Truncated_frame_closes_only_that_connection()
    {
        await using var harness = Harness.Create(output);
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        harness.Server.ConnectionClosed += (_, _) => closed.TrySetResult();
        var (stream, served) = await harness.ServeAsync();
        await using var peer = new RawPeer(stream);
        await using var client = await harness.ClientAsync();
        Assert.Equal(2, harness.Server.ConnectionCount);

        // A header announcing 100 bytes, 3 of them, then end of stream.
        await peer.SendAsync(RawPeer.Frame(100, 1, 1, 0, [1, 2, 3]));
        ((System.Net.Sockets.NetworkStream)peer.Stream).Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        await served.WaitAsync(TimeSpan.FromSeconds(10));
        await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await peer.ClosedAsync());
        Assert.Equal(1, harness.Server.ConnectionCount);

        Assert.Equal("x", (await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Echo", new EchoRequest { Text = "x" })).Text);
    }

    public static TheoryData<string, byte[]> BrokenStreams() => new()
    {
        { "truncated header", [0x00, 0x00, 0x00, 0x05, 0x00] },
        { "truncated payload", RawPeer.Frame(100, 1, 1, 0, [1, 2, 3]) },
        { "length over 4 MiB, payload never sent", RawPeer.Frame(0x7FFF_FFFF, 1, 1, 0, [1, 2, 3]) },
        { "garbage", Enumerable.Repeat((byte)0xA5, 64).ToArray() },
    };

    [Theory]
    [MemberData(nameof(BrokenStreams))]
    public async Task A_broken_stream_closes_its_connection_and_the_listener_keeps_serving_others(string what, byte[] bytes)
    {
        await using var harness = Harness.Create(output);
        var (listener, serving) = harness.Listen();
        await using var good = await TtrpcClient.ConnectUnixAsync(listener.Path, harness.Logger);
        Assert.Equal("before", await EchoAsync(good, "before"));

        await using var bad = new RawPeer(new System.Net.Sockets.NetworkStream(await UnixListener.ConnectAsync(listener.Path), ownsSocket: true));
        await bad.SendAsync(bytes);
        bad.ShutdownSend();
        Assert.True(await bad.ClosedAsync(), what);

        Assert.Equal("after", await EchoAsync(good, "after"));
        await using var fresh = await TtrpcClient.ConnectUnixAsync(listener.Path, harness.Logger);
        Assert.Equal("new", await EchoAsync(fresh, "new"));
        Assert.False(serving.IsCompleted);
    }

    [Fact]
    public async Task A_connection_the_admission_check_refuses_is_closed_unanswered_and_the_next_one_is_served()
    {
        await using var harness = Harness.Create(output);
        var admitted = 0;
        var (listener, serving) = harness.Listen(_ => Interlocked.Increment(ref admitted) > 1);

        await using var refused = new RawPeer(new System.Net.Sockets.NetworkStream(await UnixListener.ConnectAsync(listener.Path), ownsSocket: true));
        Assert.True(await refused.ClosedAsync());

        await using var client = await TtrpcClient.ConnectUnixAsync(listener.Path, harness.Logger);
        Assert.Equal("admitted", await EchoAsync(client, "admitted"));
        Assert.False(serving.IsCompleted);
    }

    [Fact]
    public async Task Cancelling_ServeConnectionAsync_closes_that_connection()
    {
        await using var harness = Harness.Create(output);
        var (a, b) = await UnixListener.PairAsync();
        using var cancel = new CancellationTokenSource();
        var served = harness.Server.ServeConnectionAsync(a, cancel.Token);
        await using var client = new TtrpcClient(b, harness.Logger);
        var call = client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Wait", new EchoRequest { Text = "w" });
        await harness.Service.Entered("w");

        await cancel.CancelAsync();
        await served.Within();
        Assert.True(await harness.Service.WaitCancelled.Task.Within());
        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
    }

    private static async Task<string> EchoAsync(TtrpcClient client, string text) =>
        (await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Echo", new EchoRequest { Text = text }).Within()).Text;

    [Fact]
    public async Task Client_going_away_cancels_its_calls_and_raises_ConnectionClosed()
    {
        await using var harness = Harness.Create(output);
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        harness.Server.ConnectionClosed += (_, _) => closed.TrySetResult();
        var client = await harness.ClientAsync();
        var call = client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Wait", new EchoRequest { Text = "w" });
        await harness.Service.Entered("w");
        await client.DisposeAsync();

        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
        Assert.True(await harness.Service.WaitCancelled.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, harness.Server.ConnectionCount);
    }

    /// <summary>
    /// Large requests and answers go through pooled buffers: concurrent calls with different large payloads each get
    /// their own bytes back, and memory an answer wraps without a copy may be reused once the call completed.
    /// </summary>
    [Fact]
    public async Task Large_payloads_are_never_mixed_up_and_lent_answer_memory_is_handed_back_after_the_answer()
    {
        var returned = 0;
        var definition = TtrpcServiceDefinition.Create(TestService.Descriptor)
            .AddUnary<EchoRequest, EchoResponse>("Echo", (r, c) =>
            {
                // The answer lends its memory: scribbled over once the call says it is done with it.
                var lent = r.Blob.ToByteArray();
                c.OnCompleted(() =>
                {
                    Array.Fill(lent, (byte)0xEE);
                    Interlocked.Increment(ref returned);
                });
                return Task.FromResult(new EchoResponse { Text = r.Text, Blob = UnsafeByteOperations.UnsafeWrap(lent) });
            })
            .Build();
        var server = new TtrpcServer([definition], new XunitLogger(output));
        var (a, b) = await UnixListener.PairAsync();
        var served = server.ServeConnectionAsync(a);
        await using (var client = new TtrpcClient(b))
        {
            var calls = Enumerable.Range(1, 8).Select(async i =>
            {
                var blob = Enumerable.Range(0, (i * 150_000) + 7).Select(j => (byte)(j * i)).ToArray();
                var answer = await client.CallAsync<EchoRequest, EchoResponse>(
                    TestService.Name, "Echo", new EchoRequest { Text = $"{i}", Blob = ByteString.CopyFrom(blob) });
                Assert.Equal($"{i}", answer.Text);
                Assert.Equal(blob, answer.Blob.ToByteArray());
            });
            await Task.WhenAll(calls).Within();
        }

        await server.ShutdownAsync();
        await served.Within();
        Assert.Equal(8, returned);
    }

    /// <summary>A request read in place stays intact until its handler is done, however many large calls follow.</summary>
    [Fact]
    public async Task A_request_read_in_place_is_valid_until_its_handler_completes()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var definition = TtrpcServiceDefinition.Create(TestService.Descriptor)
            .AddUnary<EchoRequest, EchoResponse>(
                "Block",
                payload => new EchoRequest { Blob = UnsafeByteOperations.UnsafeWrap(payload) }, // the whole request, in place
                async (r, c) =>
                {
                    await gate.Task.WaitAsync(c.CancellationToken);
                    return new EchoResponse { Blob = ByteString.CopyFrom(r.Blob.Span) };
                })
            .AddUnary<EchoRequest, EchoResponse>("Echo", (r, _) => Task.FromResult(new EchoResponse { Blob = r.Blob }))
            .Build();
        var server = new TtrpcServer([definition], new XunitLogger(output));
        var (a, b) = await UnixListener.PairAsync();
        var served = server.ServeConnectionAsync(a);
        await using (var client = new TtrpcClient(b))
        {
            var request = new EchoRequest { Blob = ByteString.CopyFrom(Enumerable.Range(0, 200_000).Select(i => (byte)i).ToArray()) };
            var blocked = client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Block", request);
            for (var i = 0; i < 20; i++)
            {
                var other = new EchoRequest { Blob = ByteString.CopyFrom(Enumerable.Repeat((byte)0xEE, 200_000 + i).ToArray()) };
                await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Echo", other).Within();
            }

            gate.SetResult();
            Assert.Equal(request.ToByteArray(), (await blocked.Within()).Blob.ToByteArray());
        }

        await server.ShutdownAsync();
        await served.Within();
    }
}
