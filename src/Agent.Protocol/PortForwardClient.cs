// Typed client for csharp.agent.v1.PortForward over TTRPC; one method per rpc in protos/agent/v1/agent.proto.
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.Agent.Protocol;

/// <summary>
/// Calls the guest agent's port-forward service on the agent's TTRPC connection. WatchListeners and Read wait by
/// design (for a change, for bytes) and Write waits for the guest to take the bytes: none has a deadline; they end
/// with the caller's token or the connection. Connect, CloseWrite and Close get <see cref="CallTimeout"/>.
/// </summary>
public sealed class PortForwardClient(TtrpcClient connection, TimeSpan? callTimeout = null)
{
    /// <summary>The TTRPC service name, as the guest serves it.</summary>
    public const string ServiceName = "csharp.agent.v1.PortForward";

    public TtrpcClient Connection { get; } = connection;

    public TimeSpan? CallTimeout { get; } = callTimeout;

    public Task<Listeners> WatchListenersAsync(WatchListenersRequest request, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<WatchListenersRequest, Listeners>(ServiceName, "WatchListeners", request, null, cancellationToken);

    public Task<PortConnectResponse> ConnectAsync(PortConnectRequest request, CancellationToken cancellationToken = default) =>
        Bounded<PortConnectRequest, PortConnectResponse>("Connect", request, cancellationToken);

    public Task<PortReadResponse> ReadAsync(PortReadRequest request, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<PortReadRequest, PortReadResponse>(ServiceName, "Read", request, null, cancellationToken);

    public Task<Empty> WriteAsync(PortWriteRequest request, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<PortWriteRequest, Empty>(ServiceName, "Write", request, null, cancellationToken);

    public Task<Empty> CloseWriteAsync(PortConnectionRequest request, CancellationToken cancellationToken = default) =>
        Bounded<PortConnectionRequest, Empty>("CloseWrite", request, cancellationToken);

    public Task<Empty> CloseAsync(PortConnectionRequest request, CancellationToken cancellationToken = default) =>
        Bounded<PortConnectionRequest, Empty>("Close", request, cancellationToken);

    private async Task<TResponse> Bounded<TRequest, TResponse>(string method, TRequest request, CancellationToken cancellationToken)
        where TRequest : Google.Protobuf.IMessage
        where TResponse : Google.Protobuf.IMessage<TResponse>, new()
    {
        var options = CallTimeout is { } timeout ? new TtrpcCallOptions { Timeout = timeout } : null;
        try
        {
            return await Connection.CallAsync<TRequest, TResponse>(ServiceName, method, request, options, cancellationToken);
        }
        catch (TtrpcException e) when (e.Code == TtrpcStatusCode.DeadlineExceeded && CallTimeout is { } t)
        {
            throw new AgentDeadlineException(method, t, e);
        }
    }
}
