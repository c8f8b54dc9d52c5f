using ShimV2.Agent.Protocol.V1;

namespace ShimV2.Shim.PortForward;

/// <summary>The guest side of port forwarding: what the guest listens on, and connections to it.</summary>
public interface IGuestPorts
{
    /// <summary>Waits until the guest's listeners have a generation other than <paramref name="generation"/>.</summary>
    Task<Listeners> WatchAsync(ulong generation, CancellationToken cancellationToken);

    /// <summary>A connection to the guest's loopback (127.0.0.1, or ::1) on <paramref name="port"/>.</summary>
    Task<IGuestConnection> ConnectAsync(int port, bool ipv6, CancellationToken cancellationToken);
}

/// <summary>One connection in the guest. One read and one write at a time; reads and writes may overlap.</summary>
public interface IGuestConnection
{
    /// <summary>Bytes the guest side sent; empty: it closed its sending side.</summary>
    Task<ReadOnlyMemory<byte>> ReadAsync(CancellationToken cancellationToken);

    /// <summary>Completes once the guest connection took all of <paramref name="data"/>.</summary>
    Task WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    /// <summary>No more bytes from the host: the guest side reads end of stream.</summary>
    Task CloseWriteAsync(CancellationToken cancellationToken);

    /// <summary>Ends the guest connection.</summary>
    Task CloseAsync(CancellationToken cancellationToken);
}
