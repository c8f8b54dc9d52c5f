using ShimV2.Ttrpc.Tests.Protos;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

/// <summary>Tests that measure the process's allocations run alone, after the parallel ones.</summary>
[CollectionDefinition(nameof(AllocationSensitive), DisableParallelization = true)]
public sealed class AllocationSensitive;

/// <summary>A frame header claiming a huge length must never make either side allocate that much.</summary>
[Collection(nameof(AllocationSensitive))]
public sealed class OversizedLengthTests(ITestOutputHelper output)
{
    private const uint OneGiB = 1u << 30;
    private const long Budget = 64L << 20;

    [Fact]
    public async Task The_server_drops_a_connection_claiming_1_GiB_without_allocating_it()
    {
        await using var harness = Harness.Create(output);
        await using var peer = await harness.RawAsync();
        await peer.SendAsync(RawPeer.RequestFrame(1, "Echo", new EchoRequest { Text = "warm-up" }));
        await peer.ReadResponseAsync();

        var before = GC.GetTotalAllocatedBytes(precise: true);
        await peer.SendAsync(RawPeer.Frame(OneGiB, 3, 1, 0, new byte[4096]));
        peer.ShutdownSend();
        Assert.True(await peer.ClosedAsync());
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        output.WriteLine($"allocated {allocated} bytes");
        Assert.InRange(allocated, 0, Budget);
    }

    [Fact]
    public async Task The_client_fails_its_calls_on_a_response_claiming_1_GiB_without_allocating_it()
    {
        var (a, b) = await UnixListener.PairAsync();
        await using var peer = new RawPeer(a);
        await using var client = new TtrpcClient(b, new XunitLogger(output));
        var call = client.CallAsync<EchoRequest, EchoResponse>("svc", "M", new EchoRequest());
        await peer.ReadRawFrameAsync();

        var before = GC.GetTotalAllocatedBytes(precise: true);
        await peer.SendAsync(RawPeer.Frame(OneGiB, 1, 2, 0, new byte[4096]));
        peer.ShutdownSend();
        var error = await Assert.ThrowsAsync<TtrpcException>(() => call.Within());
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        output.WriteLine($"allocated {allocated} bytes; {error.Code}: {error.Message}");
        Assert.Equal(TtrpcStatusCode.Unavailable, error.Code);
        Assert.Contains("oversized frame", error.Message, StringComparison.Ordinal);
        Assert.InRange(allocated, 0, Budget);
    }
}
