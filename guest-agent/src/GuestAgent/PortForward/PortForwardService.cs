using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent.Service;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.PortForward;

/// <summary>
/// csharp.agent.v1.PortForward: tells the host which TCP ports the guest listens on (on loopback reach), and carries
/// the host's forwarded connections to them. The agent runs in the VM's network namespace, which is the pod's
/// (containers never get another), so 127.0.0.1 here is the pod's loopback. Only loopback is ever dialled.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "One instance lives as long as the agent; CloseAll ends its connections.")]
internal sealed partial class PortForwardService
{
    /// <summary>Largest Read answer: with its framing it fits the 1 MiB pooled buffers, far under a TTRPC frame.</summary>
    public const int MaxReadChunk = (1 << 20) - 4096;

    private const int MinRead = 4096;

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<ulong, Socket> _connections = new();
    private readonly Func<IReadOnlyList<LoopbackListener>> _scan;
    private readonly TimeSpan _pollInterval;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private IReadOnlyList<LoopbackListener> _listeners = [];
    private ulong _generation;
    private long _nextId;

    /// <param name="scan">The listeners now (the real one reads /proc/net/tcp{,6}).</param>
    /// <param name="pollInterval">How often a waiting WatchListeners looks again.</param>
    public PortForwardService(ILogger logger, Func<IReadOnlyList<LoopbackListener>>? scan = null, TimeSpan? pollInterval = null)
    {
        _logger = logger;
        _scan = scan ?? ScanProc;
        _pollInterval = pollInterval ?? TimeSpan.FromMilliseconds(200);
    }

    /// <summary>Guest connections open now.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>The service as the TTRPC server runs it: the generated csharp.agent.v1.PortForward bound to <see cref="Endpoint"/>.</summary>
    public TtrpcServiceDefinition Definition() =>
        new TtrpcServiceBinder(AgentException.ToWire).Bind(binder => Agent.Protocol.V1.PortForward.BindService(binder, new Endpoint(this)));

    public async Task<Listeners> WatchListenersAsync(WatchListenersRequest request, CancellationToken ct)
    {
        while (true)
        {
            var (generation, listeners) = Look();
            if (generation != request.Generation)
            {
                var answer = new Listeners { Generation = generation };
                answer.Listeners_.AddRange(listeners.Select(l => new Listener { Port = (uint)l.Port, Ipv4 = l.Ipv4, Ipv6 = l.Ipv6 }));
                return answer;
            }

            // Polled: the kernel has no notification of a new listening socket.
            await Task.Delay(_pollInterval, ct);
        }
    }

    public async Task<PortConnectResponse> ConnectAsync(PortConnectRequest request, CancellationToken ct)
    {
        if (request.Port is 0 or > 65535)
        {
            throw AgentException.InvalidArgument($"invalid port {request.Port}");
        }

        var endpoint = new IPEndPoint(request.Ipv6 ? System.Net.IPAddress.IPv6Loopback : System.Net.IPAddress.Loopback, (int)request.Port);
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
            bounded.CancelAfter(ConnectTimeout);
            await socket.ConnectAsync(endpoint, bounded.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            var reason = e is SocketException s ? s.Message : $"no answer within {ConnectTimeout.TotalSeconds:0} s";
            throw AgentException.Unavailable($"connect to {endpoint} in the guest: {reason}");
        }

        var id = (ulong)Interlocked.Increment(ref _nextId);
        _connections[id] = socket;
        LogConnected(_logger, id, endpoint);
        return new PortConnectResponse { ConnectionId = id };
    }

    /// <summary>
    /// Waits until the connection is readable without holding a buffer (idle connections cost nothing), then takes
    /// all it holds, up to the asked length, in one answer: each host round trip costs the guest far more than bytes.
    /// </summary>
    public async Task<PortReadResponse> ReadAsync(PortReadRequest request, TtrpcCallContext context)
    {
        var socket = Get(request.ConnectionId);
        var max = (int)Math.Clamp(request.Len, 1u, MaxReadChunk);
        byte[]? array = null;
        try
        {
            await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, context.CancellationToken);
            // Available is 0 at end of stream; a small buffer then sees it (or whatever came meanwhile).
            var size = Math.Min(Math.Max(socket.Available, MinRead), max);
            array = ArrayPool<byte>.Shared.Rent(size);
            var n = await socket.ReceiveAsync(array.AsMemory(0, size), SocketFlags.None, context.CancellationToken);
            if (n == 0)
            {
                ArrayPool<byte>.Shared.Return(array);
                return new PortReadResponse();
            }

            var pooled = array;
            context.OnCompleted(() => ArrayPool<byte>.Shared.Return(pooled));
            array = null;
            return new PortReadResponse { Data = UnsafeByteOperations.UnsafeWrap(pooled.AsMemory(0, n)) };
        }
        catch (Exception e) when (e is ObjectDisposedException || e is SocketException { SocketErrorCode: SocketError.OperationAborted })
        {
            // Closed by the host (Close) while waiting: its end of stream.
            ReturnIfHeld(array);
            return new PortReadResponse();
        }
        catch (SocketException e)
        {
            ReturnIfHeld(array);
            throw AgentException.Unavailable($"guest connection {request.ConnectionId}: {e.Message}");
        }
    }

    public async Task<Empty> WriteAsync(PortWriteRequest request, CancellationToken ct)
    {
        var socket = Get(request.ConnectionId);
        var data = request.Data.Memory;
        try
        {
            while (!data.IsEmpty)
            {
                var n = await socket.SendAsync(data, SocketFlags.None, ct);
                data = data[n..];
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw AgentException.Unavailable($"guest connection {request.ConnectionId}: {e.Message}");
        }

        return new Empty();
    }

    public Empty CloseWrite(PortConnectionRequest request)
    {
        var socket = Get(request.ConnectionId);
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The guest side went away already: nothing left to tell it.
        }

        return new Empty();
    }

    public Empty Close(PortConnectionRequest request)
    {
        if (_connections.TryRemove(request.ConnectionId, out var socket))
        {
            socket.Dispose();
            LogClosed(_logger, request.ConnectionId);
        }

        return new Empty();
    }

    /// <summary>The host connection ended: none of its forwarded connections can go on.</summary>
    public void CloseAll()
    {
        foreach (var id in _connections.Keys)
        {
            if (_connections.TryRemove(id, out var socket))
            {
                socket.Dispose();
            }
        }
    }

    private static IReadOnlyList<LoopbackListener> ScanProc() =>
        ProcNetTcp.Parse(TryRead("/proc/net/tcp"), TryRead("/proc/net/tcp6"));

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            // No IPv6 in the guest kernel: no tcp6 table.
            return null;
        }
    }

    private static void ReturnIfHeld(byte[]? array)
    {
        if (array is not null)
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    private (ulong Generation, IReadOnlyList<LoopbackListener> Listeners) Look()
    {
        var now = _scan();
        lock (_gate)
        {
            if (_generation == 0 || !now.SequenceEqual(_listeners))
            {
                _generation++;
                _listeners = now;
                LogListeners(_logger, _generation, new PortList(now));
            }

            return (_generation, _listeners);
        }
    }

    private Socket Get(ulong id) =>
        _connections.TryGetValue(id, out var socket) ? socket : throw AgentException.NotFound($"no guest connection {id}");

    [LoggerMessage(Level = LogLevel.Debug, Message = "port-forward: listening ports (generation {Generation}): {Ports}")]
    private static partial void LogListeners(ILogger logger, ulong generation, PortList ports);

    /// <summary>"8080/4/6 9000/4": formatted only when logged.</summary>
    private readonly record struct PortList(IReadOnlyList<LoopbackListener> Items)
    {
        public override string ToString() =>
            string.Join(' ', Items.Select(l => $"{l.Port}{(l.Ipv4 ? "/4" : "")}{(l.Ipv6 ? "/6" : "")}"));
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "port-forward: connection {Id} to {Endpoint}")]
    private static partial void LogConnected(ILogger logger, ulong id, IPEndPoint endpoint);

    [LoggerMessage(Level = LogLevel.Debug, Message = "port-forward: connection {Id} closed")]
    private static partial void LogClosed(ILogger logger, ulong id);
}
