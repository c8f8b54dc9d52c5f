using Google.Protobuf;
using ShimV2.Agent.Protocol;
using ShimV2.Agent.Protocol.V1;

namespace ShimV2.Shim.PortForward;

/// <summary><see cref="IGuestPorts"/> over the guest agent's PortForward service.</summary>
public sealed class AgentGuestPorts(PortForwardClient client) : IGuestPorts
{
    /// <summary>Most bytes asked for per Read: the agent's own limit (a TTRPC frame holds 4 MiB).</summary>
    private const uint ReadChunk = (1 << 20) - 4096;

    public Task<Listeners> WatchAsync(ulong generation, CancellationToken cancellationToken) =>
        client.WatchListenersAsync(new WatchListenersRequest { Generation = generation }, cancellationToken);

    public async Task<IGuestConnection> ConnectAsync(int port, bool ipv6, CancellationToken cancellationToken)
    {
        var response = await client.ConnectAsync(new PortConnectRequest { Port = (uint)port, Ipv6 = ipv6 }, cancellationToken);
        return new Connection(client, response.ConnectionId);
    }

    private sealed class Connection(PortForwardClient client, ulong id) : IGuestConnection
    {
        public async Task<ReadOnlyMemory<byte>> ReadAsync(CancellationToken cancellationToken) =>
            (await client.ReadAsync(new PortReadRequest { ConnectionId = id, Len = ReadChunk }, cancellationToken)).Data.Memory;

        public Task WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken) =>
            client.WriteAsync(new PortWriteRequest { ConnectionId = id, Data = ByteString.CopyFrom(data.Span) }, cancellationToken);

        public Task CloseWriteAsync(CancellationToken cancellationToken) =>
            client.CloseWriteAsync(new PortConnectionRequest { ConnectionId = id }, cancellationToken);

        public Task CloseAsync(CancellationToken cancellationToken) =>
            client.CloseAsync(new PortConnectionRequest { ConnectionId = id }, cancellationToken);
    }
}
