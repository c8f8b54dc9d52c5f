using ShimV2.Ttrpc.Tests.Protos;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

/// <summary>Graceful and forced server shutdown.</summary>
public sealed class ShutdownTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Graceful_shutdown_finishes_in_flight_calls_and_refuses_new_work()
    {
        await using var harness = Harness.Create(output);
        var (listener, serving) = harness.Listen();
        await using var busy = await TtrpcClient.ConnectUnixAsync(listener.Path, harness.Logger);
        await using var idle = await TtrpcClient.ConnectUnixAsync(listener.Path, harness.Logger);
        Assert.Equal("a", await EchoAsync(busy, "a"));
        Assert.Equal("b", await EchoAsync(idle, "b"));
        Assert.Equal(2, harness.Server.ConnectionCount);

        var slow = busy.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Block", new EchoRequest { Text = "slow" });
        await harness.Service.Entered("slow");

        var shutdown = harness.Server.ShutdownAsync();
        await serving.Within();           // the accept loop has stopped
        await idle.Completion.Within();   // an idle connection is closed at once

        // A new request on the busy connection is refused while its in-flight call goes on.
        var refused = await Assert.ThrowsAsync<TtrpcException>(() => EchoAsync(busy, "late"));
        Assert.Equal(TtrpcStatusCode.Unavailable, refused.Code);
        Assert.Equal("ttrpc: server shutting down", refused.Message);

        // A new connection is closed without being served.
        var (stream, served) = await harness.ServeAsync();
        await using var peer = new RawPeer(stream);
        await served.Within();
        Assert.True(await peer.ClosedAsync());

        Assert.False(slow.IsCompleted);
        Assert.False(shutdown.IsCompleted);
        harness.Service.Open("slow");
        Assert.Equal("slow", (await slow.Within()).Text);

        await shutdown.Within();
        await busy.Completion.Within();
        Assert.Equal(0, harness.Server.ConnectionCount);
    }

    [Fact]
    public async Task Shutdown_with_nothing_in_flight_closes_every_connection()
    {
        await using var harness = Harness.Create(output);
        var closed = 0;
        harness.Server.ConnectionClosed += (_, _) => Interlocked.Increment(ref closed);
        await using var one = await harness.ClientAsync();
        await using var two = await harness.ClientAsync();
        Assert.Equal("1", await EchoAsync(one, "1"));
        Assert.Equal("2", await EchoAsync(two, "2"));

        await harness.Server.ShutdownAsync().Within();
        await Task.WhenAll(one.Completion, two.Completion).Within();
        Assert.Equal(2, Volatile.Read(ref closed));
        var error = await Assert.ThrowsAsync<TtrpcException>(() => EchoAsync(one, "after"));
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
    }

    [Fact]
    public async Task Shutdown_deadline_cancels_the_calls_still_running()
    {
        await using var harness = Harness.Create(output);
        await using var client = await harness.ClientAsync();
        var call = client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Wait", new EchoRequest { Text = "w" });
        await harness.Service.Entered("w");

        using var deadline = new CancellationTokenSource();
        var shutdown = harness.Server.ShutdownAsync(deadline.Token);
        Assert.False(shutdown.IsCompleted); // Wait only ends when cancelled
        await deadline.CancelAsync();
        await shutdown.Within();

        Assert.True(await harness.Service.WaitCancelled.Task.Within());
        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
        Assert.Equal(0, harness.Server.ConnectionCount);
    }

    [Fact]
    public async Task A_server_can_be_disposed_twice_and_refuses_connections_afterwards()
    {
        await using var harness = Harness.Create(output);
        await harness.Server.DisposeAsync();
        await harness.Server.DisposeAsync();

        var (stream, served) = await harness.ServeAsync();
        await using var peer = new RawPeer(stream);
        await served.Within();
        Assert.True(await peer.ClosedAsync());

        using var listener = new UnixListener();
        await harness.Server.ServeAsync(listener.Socket).Within();
    }

    private static async Task<string> EchoAsync(TtrpcClient client, string text) =>
        (await client.CallAsync<EchoRequest, EchoResponse>(TestService.Name, "Echo", new EchoRequest { Text = text }).Within()).Text;
}
