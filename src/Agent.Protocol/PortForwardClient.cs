// Typed client for csharp.agent.v1.PortForward over TTRPC: the generated client, with the agent's deadline policy.
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.Agent.Protocol;

/// <summary>
/// Calls the guest agent's port-forward service on the agent's TTRPC connection. WatchListeners and Read wait by
/// design (for a change, for bytes) and Write waits for the guest to take the bytes: none has a deadline; they end
/// with the caller's token or the connection. Connect, CloseWrite and Close get <see cref="CallTimeout"/>.
/// </summary>
public sealed class PortForwardClient
{
    private readonly V1.PortForward.PortForwardClient _waiting;
    private readonly V1.PortForward.PortForwardClient _bounded;

    public PortForwardClient(TtrpcClient connection, TimeSpan? callTimeout = null)
    {
        Connection = connection;
        CallTimeout = callTimeout;
        var invoker = new TtrpcCallInvoker(connection);
        _waiting = new V1.PortForward.PortForwardClient(invoker);
        _bounded = callTimeout is { } timeout ? new V1.PortForward.PortForwardClient(new AgentDeadlineInvoker(invoker, timeout)) : _waiting;
    }

    /// <summary>The TTRPC service name, as the guest serves it.</summary>
    public static string ServiceName => V1.PortForward.Descriptor.FullName;

    public TtrpcClient Connection { get; }

    public TimeSpan? CallTimeout { get; }

    public Task<Listeners> WatchListenersAsync(WatchListenersRequest request, CancellationToken cancellationToken = default) =>
        _waiting.WatchListenersAsync(request, cancellationToken: cancellationToken).ResponseAsync;

    public Task<PortConnectResponse> ConnectAsync(PortConnectRequest request, CancellationToken cancellationToken = default) =>
        _bounded.ConnectAsync(request, cancellationToken: cancellationToken).ResponseAsync;

    public Task<PortReadResponse> ReadAsync(PortReadRequest request, CancellationToken cancellationToken = default) =>
        _waiting.ReadAsync(request, cancellationToken: cancellationToken).ResponseAsync;

    public Task<Empty> WriteAsync(PortWriteRequest request, CancellationToken cancellationToken = default) =>
        _waiting.WriteAsync(request, cancellationToken: cancellationToken).ResponseAsync;

    public Task<Empty> CloseWriteAsync(PortConnectionRequest request, CancellationToken cancellationToken = default) =>
        _bounded.CloseWriteAsync(request, cancellationToken: cancellationToken).ResponseAsync;

    public Task<Empty> CloseAsync(PortConnectionRequest request, CancellationToken cancellationToken = default) =>
        _bounded.CloseAsync(request, cancellationToken: cancellationToken).ResponseAsync;
}
