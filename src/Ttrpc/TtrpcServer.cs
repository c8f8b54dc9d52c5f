using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ShimV2.Ttrpc;

/// <summary>
/// A TTRPC server: serves the registered services on accepted sockets or already-connected streams. Requests are
/// served concurrently and answered out of order.
/// </summary>
public sealed class TtrpcServer : IAsyncDisposable
{
    private static readonly TimeSpan MaxAcceptBackoff = TimeSpan.FromSeconds(1);

    private readonly Dictionary<string, TtrpcServiceDefinition> _services = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly HashSet<ServerConnection> _connections = [];
    private readonly CancellationTokenSource _stopAccepting = new();
    private bool _shuttingDown;

    public TtrpcServer(IEnumerable<TtrpcServiceDefinition> services, ILogger? logger = null, TtrpcServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        foreach (var service in services)
        {
            if (!_services.TryAdd(service.ServiceName, service))
            {
                throw new ArgumentException($"service {service.ServiceName} registered twice", nameof(services));
            }
        }

        Logger = logger ?? NullLogger.Instance;
        MaxMessageSize = (options ?? new TtrpcServerOptions()).MaxMessageSize;
        if (MaxMessageSize <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "MaxMessageSize must be positive");
        }
    }

    /// <summary>Connections being served now.</summary>
    public int ConnectionCount
    {
        get
        {
            lock (_gate)
            {
                return _connections.Count;
            }
        }
    }

    /// <summary>Raised after each connection ends (the shim exits when none connect).</summary>
    public event EventHandler? ConnectionClosed;

    internal ILogger Logger { get; }

    internal int MaxMessageSize { get; }

    /// <summary>
    /// Accepts connections on a listening socket (unix or vsock) and serves each until it closes. Returns when
    /// <paramref name="cancellationToken"/> is cancelled, on shutdown, or when the listener is closed; connections
    /// already accepted go on until they close or <see cref="ShutdownAsync"/>. The listener is not closed.
    /// </summary>
    public async Task ServeAsync(Socket listener, CancellationToken cancellationToken = default) =>
        await ServeAsync(listener, admit: null, cancellationToken);

    /// <summary>As <see cref="ServeAsync(Socket, CancellationToken)"/>; a connection <paramref name="admit"/> refuses
    /// is closed at once, before a byte is read from it.</summary>
    public async Task ServeAsync(Socket listener, Func<Socket, bool>? admit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(listener);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopAccepting.Token);
        var backoff = TimeSpan.Zero;
        while (!stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.OperationAborted or SocketError.Shutdown
                                              or SocketError.NotSocket or SocketError.InvalidArgument)
            {
                // The listener was closed (or was never listening).
                return;
            }
            catch (SocketException e)
            {
                // Transient (EMFILE, ECONNABORTED, ...): back off like ttrpc's Serve and go on.
                backoff = backoff == TimeSpan.Zero ? TimeSpan.FromMilliseconds(5) : backoff * 2;
                backoff = backoff > MaxAcceptBackoff ? MaxAcceptBackoff : backoff;
                Log.AcceptFailed(Logger, e, backoff);
                try
                {
                    await Task.Delay(backoff, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            backoff = TimeSpan.Zero;
            if (admit is not null && !admit(socket))
            {
                socket.Dispose();
                continue;
            }

            _ = ServeConnectionAsync(new NetworkStream(socket, ownsSocket: true), CancellationToken.None);
        }
    }

    /// <summary>
    /// Serves one already-connected stream (e.g. a virtio-serial port) until end of stream or close. The server
    /// owns the stream and disposes it. Cancelling <paramref name="cancellationToken"/> closes the connection.
    /// </summary>
    public Task ServeConnectionAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var connection = new ServerConnection(this, stream);
        int count;
        lock (_gate)
        {
            if (_shuttingDown)
            {
                count = -1;
            }
            else
            {
                _connections.Add(connection);
                count = _connections.Count;
            }
        }

        if (count < 0)
        {
            Log.ConnectionRefused(Logger);
            stream.Dispose();
            return Task.CompletedTask;
        }

        Log.ConnectionOpened(Logger, count);
        return RunConnectionAsync(connection, cancellationToken);
    }

    /// <summary>
    /// Graceful shutdown: stops accepting, lets in-flight calls finish and their answers be written, then closes
    /// every connection (new requests meanwhile get Unavailable). When <paramref name="cancellationToken"/> fires
    /// first, the remaining connections are closed at once (their calls' tokens cancelled) and the method returns.
    /// </summary>
    public async Task ShutdownAsync(CancellationToken cancellationToken = default)
    {
        ServerConnection[] connections;
        lock (_gate)
        {
            _shuttingDown = true;
            connections = [.. _connections];
        }

        // Drain before the first await: once ShutdownAsync has been called, every request read is refused.
        foreach (var connection in connections)
        {
            connection.BeginGracefulClose();
        }

        await _stopAccepting.CancelAsync();

        var closed = Task.WhenAll(connections.Select(c => c.Closed));
        try
        {
            await closed.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Log.ShutdownForced(Logger, connections.Count(c => !c.Closed.IsCompleted));
            foreach (var connection in connections)
            {
                connection.Abort();
            }

            await closed;
        }
    }

    /// <summary>Closes everything at once (a forced <see cref="ShutdownAsync"/>). Safe to call more than once.</summary>
    /// <remarks>
    /// <c>_stopAccepting</c> is deliberately not disposed: it has no timer, and a disposed source would make a later
    /// <see cref="ShutdownAsync"/>, <see cref="ServeAsync"/> or second dispose throw instead of doing nothing.
    /// </remarks>
    public async ValueTask DisposeAsync()
    {
        using var now = new CancellationTokenSource();
        await now.CancelAsync();
        await ShutdownAsync(now.Token);
    }

    internal bool TryFindMethod(string service, string method, out UnaryMethodHandler? handler, out string? error)
    {
        handler = null;
        error = null;
        if (!_services.TryGetValue(service, out var definition))
        {
            error = $"service {service} not implemented";
            return false;
        }

        if (!definition.Methods.TryGetValue(method, out handler))
        {
            error = $"service {service}: method {method} not implemented";
            return false;
        }

        return true;
    }

    private async Task RunConnectionAsync(ServerConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            using var registration = cancellationToken.Register(static c => ((ServerConnection)c!).Abort(), connection);
            await connection.RunAsync();
        }
        finally
        {
            int count;
            lock (_gate)
            {
                _connections.Remove(connection);
                count = _connections.Count;
            }

            Log.ConnectionEnded(Logger, count);
            try
            {
                ConnectionClosed?.Invoke(this, EventArgs.Empty);
            }
            catch (Exception e)
            {
                Log.ConnectionClosedHandlerFailed(Logger, e);
            }

            connection.MarkClosed();
        }
    }
}
