using Grpc.Core;
using ShimV2.Ttrpc.Tests.Generated;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

/// <summary>Grpc.Tools' generated client and service base over a real TTRPC client and server on a socketpair.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "xunit disposes it through IAsyncLifetime.")]
public sealed class GeneratedServiceTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly GreeterService _service = new();
    private TtrpcServer _server = null!;
    private TtrpcClient _client = null!;
    private Task _served = Task.CompletedTask;

    private Greeter.GreeterClient Greeter => new(new TtrpcCallInvoker(_client));

    public async Task InitializeAsync()
    {
        var binder = new TtrpcServiceBinder((e, _) => e is InvalidOperationException
            ? new TtrpcException(TtrpcStatusCode.FailedPrecondition, "mapped: " + e.Message)
            : e);
        _server = new TtrpcServer([binder.Bind(b => Generated.Greeter.BindService(b, _service))], new XunitLogger(output));
        var (a, b) = await UnixListener.PairAsync();
        _served = _server.ServeConnectionAsync(a);
        _client = new TtrpcClient(b);
    }

    public async Task DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        await _served.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    [Fact]
    public async Task A_generated_client_calls_a_generated_service()
    {
        var answer = await Greeter.EchoAsync(new Note { Text = "hello" }).ResponseAsync.Within();
        Assert.Equal("hello", answer.Text);

        // The blocking flavour too (off the test's synchronization context, as a blocking caller would be).
        Assert.Equal("again", (await Task.Run(() => Greeter.Echo(new Note { Text = "again" })).Within()).Text);
    }

    [Fact]
    public async Task The_deadline_goes_on_the_wire_and_the_handler_sees_it()
    {
        var before = DateTime.UtcNow;
        var deadline = before.AddMinutes(5);
        var answer = await Greeter.ContextAsync(new Note(), deadline: deadline).ResponseAsync.Within();

        var seen = DateTimeOffset.FromUnixTimeMilliseconds(answer.DeadlineUnixMs).UtcDateTime;
        Assert.InRange(seen, before, deadline.AddSeconds(1));
        var raw = Assert.Single(_service.Calls);
        Assert.NotNull(raw.Deadline);

        // Without one, the handler sees gRPC's "none" and no timeout was sent.
        var none = await Greeter.ContextAsync(new Note()).ResponseAsync.Within();
        Assert.Equal(0, none.DeadlineUnixMs);
    }

    [Fact]
    public async Task Headers_arrive_as_metadata_with_the_peer()
    {
        var answer = await Greeter.ContextAsync(new Note(), new Metadata { { "tenant", "blue" }, { "trace", "t1" } }).ResponseAsync.Within();

        Assert.StartsWith("tenant=blue trace=t1 peer=unix:", answer.Text, StringComparison.Ordinal);
        var raw = Assert.Single(_service.Calls);
        Assert.Equal([new("tenant", "blue"), new("trace", "t1")], raw.Metadata);
        Assert.Equal("/ttrpc.test.generated.v1.Greeter/Context", _service.Methods.Single());
    }

    [Fact]
    public async Task A_binary_header_is_refused_before_sending()
    {
        var headers = new Metadata { { "blob-bin", new byte[] { 1, 2 } } };
        var e = await Assert.ThrowsAsync<NotSupportedException>(() => Greeter.EchoAsync(new Note(), headers).ResponseAsync);
        Assert.Contains("blob-bin", e.Message, StringComparison.Ordinal);
        Assert.Empty(_service.Calls);
    }

    [Fact]
    public async Task A_passed_deadline_fails_the_call_as_DeadlineExceeded_and_cancels_the_handler()
    {
        var call = Greeter.WaitAsync(new Note(), deadline: DateTime.UtcNow.AddMilliseconds(300));

        var e = await Assert.ThrowsAsync<TtrpcException>(() => call.ResponseAsync.Within());
        Assert.Equal(TtrpcStatusCode.DeadlineExceeded, e.Code);
        Assert.Equal(StatusCode.DeadlineExceeded, call.GetStatus().StatusCode);
        Assert.True(await _service.WaitCancelled.Task.Within());
    }

    [Fact]
    public async Task An_expired_deadline_is_not_sent()
    {
        var e = await Assert.ThrowsAsync<TtrpcException>(() => Greeter.EchoAsync(new Note(), deadline: DateTime.UtcNow.AddSeconds(-1)).ResponseAsync);
        Assert.Equal(TtrpcStatusCode.DeadlineExceeded, e.Code);
        Assert.Empty(_service.Calls);
    }

    [Fact]
    public async Task Cancelling_the_token_or_disposing_the_call_ends_the_wait()
    {
        using var cancel = new CancellationTokenSource();
        var call = Greeter.WaitAsync(new Note { Text = "a" }, cancellationToken: cancel.Token);
        await _service.Entered("a");
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call.ResponseAsync.Within());

        var disposed = Greeter.WaitAsync(new Note { Text = "b" });
        await _service.Entered("b");
        disposed.Dispose();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => disposed.ResponseAsync.Within());
        Assert.Equal(StatusCode.Cancelled, disposed.GetStatus().StatusCode);
    }

    [Fact]
    public async Task A_method_the_service_does_not_implement_and_an_unknown_service_are_Unimplemented()
    {
        var missing = await Assert.ThrowsAsync<TtrpcException>(() => Greeter.MissingAsync(new Note()).ResponseAsync.Within());
        Assert.Equal(TtrpcStatusCode.Unimplemented, missing.Code);

        // A server without the Greeter service.
        await using var other = new TtrpcServer([new TestService().Definition], new XunitLogger(output));
        var (a, b) = await UnixListener.PairAsync();
        var served = other.ServeConnectionAsync(a);
        await using (var client = new TtrpcClient(b))
        {
            var unknown = await Assert.ThrowsAsync<TtrpcException>(() =>
                new Greeter.GreeterClient(new TtrpcCallInvoker(client)).EchoAsync(new Note()).ResponseAsync.Within());
            Assert.Equal(TtrpcStatusCode.Unimplemented, unknown.Code);
            Assert.Equal("service ttrpc.test.generated.v1.Greeter not implemented", unknown.Message);
        }

        await other.ShutdownAsync();
        await served.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
    }

    [Theory]
    [InlineData(StatusCode.NotFound, TtrpcStatusCode.NotFound)]
    [InlineData(StatusCode.AlreadyExists, TtrpcStatusCode.AlreadyExists)]
    [InlineData(StatusCode.OK, TtrpcStatusCode.Unknown)]
    public async Task An_RpcException_from_a_handler_answers_its_code(StatusCode thrown, TtrpcStatusCode answered)
    {
        var e = await Assert.ThrowsAsync<TtrpcException>(() =>
            Greeter.FailAsync(new Note { Code = (int)thrown, Text = "gone away" }).ResponseAsync.Within());
        Assert.Equal(answered, e.Code);
        Assert.Equal("gone away", e.Message);
    }

    [Fact]
    public async Task Other_handler_errors_go_through_the_services_own_mapping()
    {
        var call = Greeter.FailAsync(new Note { Text = "not now" });
        var e = await Assert.ThrowsAsync<TtrpcException>(() => call.ResponseAsync.Within());
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, e.Code);
        Assert.Equal("mapped: not now", e.Message);
        Assert.Equal(StatusCode.FailedPrecondition, call.GetStatus().StatusCode);
        Assert.Equal("mapped: not now", call.GetStatus().Detail);
    }

    [Fact]
    public void Streaming_methods_are_refused_by_the_binder_and_the_invoker()
    {
        var bind = Assert.Throws<NotSupportedException>(() =>
            new TtrpcServiceBinder().Bind(b => Streamer.BindService(b, new NoStreamer())));
        Assert.Contains("ttrpc.test.generated.v1.Streamer/Upload", bind.Message, StringComparison.Ordinal);
        Assert.Contains("only unary", bind.Message, StringComparison.Ordinal);

        var call = Assert.Throws<NotSupportedException>(() => new Streamer.StreamerClient(new TtrpcCallInvoker(_client)).Upload());
        Assert.Contains("ttrpc.test.generated.v1.Streamer/Upload", call.Message, StringComparison.Ordinal);
    }

    private sealed class NoStreamer : Streamer.StreamerBase;

    private sealed class GreeterService : Greeter.GreeterBase
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource> _entered = new();

        public System.Collections.Concurrent.ConcurrentQueue<TtrpcCallContext> Calls { get; } = new();

        public System.Collections.Concurrent.ConcurrentQueue<string> Methods { get; } = new();

        public TaskCompletionSource<bool> WaitCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Entered(string text) => Entry(text).Task.Within();

        public override Task<Note> Echo(Note request, ServerCallContext context)
        {
            Calls.Enqueue(context.Ttrpc());
            return Task.FromResult(new Note { Text = request.Text });
        }

        public override Task<Note> Context(Note request, ServerCallContext context)
        {
            Calls.Enqueue(context.Ttrpc());
            Methods.Enqueue(context.Method);
            var headers = string.Join(' ', context.RequestHeaders.Select(h => $"{h.Key}={h.Value}"));
            return Task.FromResult(new Note
            {
                Text = $"{headers} peer={context.Peer}",
                DeadlineUnixMs = context.Deadline == DateTime.MaxValue ? 0 : new DateTimeOffset(context.Deadline).ToUnixTimeMilliseconds(),
            });
        }

        public override async Task<Note> Wait(Note request, ServerCallContext context)
        {
            Entry(request.Text).TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, context.CancellationToken);
            }
            finally
            {
                WaitCancelled.TrySetResult(context.CancellationToken.IsCancellationRequested);
            }

            return new Note();
        }

        public override Task<Note> Fail(Note request, ServerCallContext context) => request.Code != 0 || request.Text == "gone away"
            ? throw new RpcException(new Status((StatusCode)request.Code, request.Text))
            : throw new InvalidOperationException(request.Text);

        private TaskCompletionSource Entry(string text) =>
            _entered.GetOrAdd(text, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
    }
}
