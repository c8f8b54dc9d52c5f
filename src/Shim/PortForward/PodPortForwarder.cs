using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Netlink;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.PortForward;

/// <summary>
/// Makes CRI PortForward reach the pod's VM. containerd serves `kubectl port-forward` by dialling localhost:PORT
/// inside the pod's network namespace on the host; with runc the pod's processes listen there, with a VM nothing
/// does. So the shim follows the TCP ports the guest listens on where loopback reaches them (the agent reports them),
/// listens on the same loopback address and port in the pod's network namespace, and relays every connection it
/// accepts to a connection the agent makes to that port in the guest. Nothing is opened outside that namespace:
/// the listening sockets are created by a thread inside it, and loopback is all they bind.
/// </summary>
public sealed partial class PodPortForwarder : IAsyncDisposable
{
    /// <summary>How long after a failed watch to ask again (the agent may be busy; a lost connection ends us).</summary>
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(5);

    private readonly IGuestPorts _guest;
    private readonly Func<IPEndPoint, Socket> _listen;
    private readonly ILogger _logger;
    private readonly string _sandboxId;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<IPEndPoint, Socket> _listeners = [];
    private readonly ConcurrentDictionary<long, Task> _work = new();
    private readonly Task _watch;
    private long _nextWork;
    private int _disposed;

    /// <param name="listen">Opens a listening socket on the endpoint (in the pod's network namespace).</param>
    public PodPortForwarder(IGuestPorts guest, Func<IPEndPoint, Socket> listen, ILogger logger, string sandboxId)
    {
        _guest = guest;
        _listen = listen;
        _logger = logger;
        _sandboxId = sandboxId;
        _watch = Task.Run(WatchAsync);
    }

    /// <summary>Where the shim listens now, for the guest's ports.</summary>
    public IReadOnlyList<IPEndPoint> Listening
    {
        get
        {
            lock (_gate)
            {
                return [.. _listeners.Keys];
            }
        }
    }

    /// <summary>The local address a listener for <paramref name="guestEndpoint"/> got (the same one, in the pod's namespace).</summary>
    public IPEndPoint? LocalEndPoint(IPEndPoint guestEndpoint)
    {
        lock (_gate)
        {
            return _listeners.TryGetValue(guestEndpoint, out var s) ? (IPEndPoint?)s.LocalEndPoint : null;
        }
    }

    /// <summary>Port forwarding for a pod VM over its agent connection, listening in <paramref name="netnsPath"/>.</summary>
    public static PodPortForwarder ForPod(string sandboxId, string netnsPath, TtrpcClient agent, TimeSpan callTimeout, ILogger logger) =>
        new(new AgentGuestPorts(new PortForwardClient(agent, callTimeout)), endpoint => NetworkNamespace.Run(netnsPath, () => Listen(endpoint)), logger, sandboxId);

    /// <summary>A listening TCP socket on <paramref name="endpoint"/> in the calling thread's network namespace.</summary>
    public static Socket Listen(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endpoint.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.DualMode = false;
            }

            socket.Bind(endpoint);
            socket.Listen(128);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Stops listening, resets the connections still open, and waits (bounded) for it all to end.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stop.CancelAsync();
        await _watch.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        lock (_gate)
        {
            foreach (var socket in _listeners.Values)
            {
                socket.Dispose();
            }

            _listeners.Clear();
        }

        await Task.WhenAll(_work.Values).WaitAsync(StopTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private async Task WatchAsync()
    {
        ulong generation = 0;
        var failing = false;
        while (!_stop.IsCancellationRequested)
        {
            Listeners listeners;
            try
            {
                listeners = await _guest.WatchAsync(generation, _stop.Token);
                failing = false;
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (TtrpcException e) when (e.Code == TtrpcStatusCode.Unimplemented)
            {
                LogUnsupported(_logger, _sandboxId, e.Message);
                return;
            }
            catch (Exception e)
            {
                if (!failing)
                {
                    LogWatchFailed(_logger, _sandboxId, e.Message);
                    failing = true;
                }

                await Task.Delay(RetryDelay, _stop.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }

            generation = listeners.Generation;
            Reconcile(listeners);
        }
    }

    private void Reconcile(Listeners listeners)
    {
        var wanted = new HashSet<IPEndPoint>();
        foreach (var l in listeners.Listeners_)
        {
            if (l.Ipv4)
            {
                wanted.Add(new IPEndPoint(System.Net.IPAddress.Loopback, (int)l.Port));
            }

            if (l.Ipv6)
            {
                wanted.Add(new IPEndPoint(System.Net.IPAddress.IPv6Loopback, (int)l.Port));
            }
        }

        lock (_gate)
        {
            if (_stop.IsCancellationRequested)
            {
                return;
            }

            foreach (var gone in _listeners.Keys.Where(e => !wanted.Contains(e)).ToList())
            {
                // Connections already accepted stay: the guest may still be serving them.
                _listeners.Remove(gone, out var socket);
                socket!.Dispose();
                LogStopped(_logger, _sandboxId, gone);
            }

            foreach (var endpoint in wanted.Where(e => !_listeners.ContainsKey(e)))
            {
                Socket socket;
                try
                {
                    socket = _listen(endpoint);
                }
                catch (Exception e) when (e is SocketException or NetlinkException)
                {
                    // E.g. ::1 where the pod's namespace has no IPv6: containerd then dials 127.0.0.1 anyway.
                    if (endpoint.AddressFamily == AddressFamily.InterNetworkV6)
                    {
                        LogListenFailedV6(_logger, _sandboxId, endpoint, e.Message);
                    }
                    else
                    {
                        LogListenFailed(_logger, _sandboxId, endpoint, e.Message);
                    }

                    continue;
                }

                _listeners[endpoint] = socket;
                LogListening(_logger, _sandboxId, endpoint);
                Track(AcceptAsync(socket, endpoint));
            }
        }
    }

    private void Track(Task task)
    {
        var id = Interlocked.Increment(ref _nextWork);
        _work[id] = task;
        _ = task.ContinueWith(_ => _work.TryRemove(id, out Task? _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task AcceptAsync(Socket listener, IPEndPoint endpoint)
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // The listener was closed: the guest stopped listening, or the pod stops.
                return;
            }

            Track(ForwardAsync(client, endpoint));
        }
    }

    private async Task ForwardAsync(Socket client, IPEndPoint endpoint)
    {
        client.NoDelay = true;
        IGuestConnection guest;
        try
        {
            guest = await _guest.ConnectAsync(endpoint.Port, endpoint.AddressFamily == AddressFamily.InterNetworkV6, _stop.Token);
        }
        catch (Exception e)
        {
            LogConnectFailed(_logger, _sandboxId, endpoint, e.Message);
            client.LingerState = new LingerOption(true, 0);
            client.Dispose();
            return;
        }

        var failure = await ConnectionRelay.RunAsync(client, guest, _stop.Token);
        if (failure is not null && !_stop.IsCancellationRequested)
        {
            LogRelayFailed(_logger, _sandboxId, endpoint, failure.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: port-forward: listening on {Endpoint} in the pod's network namespace (the guest listens on it)")]
    private static partial void LogListening(ILogger logger, string sandboxId, IPEndPoint endpoint);

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: port-forward: stopped listening on {Endpoint} (the guest no longer does)")]
    private static partial void LogStopped(ILogger logger, string sandboxId, IPEndPoint endpoint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: port-forward: cannot listen on {Endpoint} in the pod's network namespace: {Reason}")]
    private static partial void LogListenFailed(ILogger logger, string sandboxId, IPEndPoint endpoint, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "sandbox {SandboxId}: port-forward: no IPv6 listener on {Endpoint} in the pod's network namespace ({Reason}); containerd dials 127.0.0.1 first")]
    private static partial void LogListenFailedV6(ILogger logger, string sandboxId, IPEndPoint endpoint, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: port-forward: the guest agent has no port forwarding ({Reason}); PortForward will not reach this pod")]
    private static partial void LogUnsupported(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: port-forward: cannot learn the guest's listening ports: {Reason}")]
    private static partial void LogWatchFailed(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: port-forward: connection to {Endpoint} refused: the guest could not connect: {Reason}")]
    private static partial void LogConnectFailed(ILogger logger, string sandboxId, IPEndPoint endpoint, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "sandbox {SandboxId}: port-forward: connection to {Endpoint} broke: {Reason}")]
    private static partial void LogRelayFailed(ILogger logger, string sandboxId, IPEndPoint endpoint, string reason);
}
