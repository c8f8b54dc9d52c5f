using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Agent.Protocol.V1;
using IPAddress = System.Net.IPAddress;
using ShimV2.Shim.PortForward;

namespace ShimV2.Shim.Tests;

/// <summary>
/// <see cref="PodPortForwarder"/> and <see cref="ConnectionRelay"/> between real loopback sockets: the "guest" is a
/// TCP server of the test, reached through a fake <see cref="IGuestPorts"/> that relays over its own socket as the
/// agent does; the shim's listeners bind ephemeral ports (the guest's port is taken by that server here).
/// </summary>
public sealed class PortForwardTests : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly FakeGuest _guest = new();
    private readonly List<Socket> _servers = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _servers)
        {
            s.Dispose();
        }

        await Task.CompletedTask;
    }

    [Fact]
    public async Task Many_connections_at_once_carry_mebibytes_both_ways_and_a_client_half_close_reaches_the_guest()
    {
        var port = StartServer(EchoUntilEndAsync);
        await using var forwarder = Forwarder();
        _guest.Publish(1, new Listener { Port = (uint)port, Ipv4 = true });
        var local = await ListeningAsync(forwarder, new IPEndPoint(IPAddress.Loopback, port));

        var clients = Enumerable.Range(0, 12).Select(async i =>
        {
            var body = RandomNumberGenerator.GetBytes((2 << 20) + i * 1009);
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(local);
            var reading = ReadToEndAsync(client);
            await client.SendAsync(body);
            // The client's FIN must reach the guest server as end of stream, and its answer still come back.
            client.Shutdown(SocketShutdown.Send);
            var echoed = await reading.WaitAsync(Timeout);
            Assert.Equal(SHA256.HashData(body), SHA256.HashData(echoed));
            Assert.Equal(body.Length, echoed.Length);
        });
        await Task.WhenAll(clients).WaitAsync(Timeout);
        await Until(() => _guest.Open == 0, "guest connections were not closed after both sides ended");
    }

    [Fact]
    public async Task A_guest_server_that_closes_first_still_receives_what_the_client_sends_after()
    {
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var port = StartServer(async s =>
        {
            await s.SendAsync("hello\n"u8.ToArray());
            s.Shutdown(SocketShutdown.Send);
            received.TrySetResult(System.Text.Encoding.ASCII.GetString(await ReadToEndAsync(s)));
        });
        await using var forwarder = Forwarder();
        _guest.Publish(1, new Listener { Port = (uint)port, Ipv4 = true });
        var local = await ListeningAsync(forwarder, new IPEndPoint(IPAddress.Loopback, port));

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(local);
        Assert.Equal("hello\n", System.Text.Encoding.ASCII.GetString(await ReadToEndAsync(client).WaitAsync(Timeout)));
        await client.SendAsync("bye\n"u8.ToArray());
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal("bye\n", await received.Task.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Listeners_follow_the_guests_ports_and_dispose_closes_listeners_and_open_connections()
    {
        var port = StartServer(EchoUntilEndAsync);
        var forwarder = Forwarder();
        var v4 = new IPEndPoint(IPAddress.Loopback, port);
        var v6 = new IPEndPoint(IPAddress.IPv6Loopback, port);
        _guest.Publish(1, new Listener { Port = (uint)port, Ipv4 = true, Ipv6 = true });
        var local = await ListeningAsync(forwarder, v4);
        await ListeningAsync(forwarder, v6);

        using var open = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await open.ConnectAsync(local);
        await open.SendAsync("x"u8.ToArray());
        Assert.Equal((byte)'x', (await ReadSomeAsync(open))[0]);

        // The guest stops listening on IPv6 only: that listener goes, the other and the open connection stay.
        _guest.Publish(2, new Listener { Port = (uint)port, Ipv4 = true });
        await Until(() => !forwarder.Listening.Contains(v6), "the ::1 listener stayed after the guest stopped listening there");
        Assert.Contains(v4, forwarder.Listening);
        await open.SendAsync("y"u8.ToArray());
        Assert.Equal((byte)'y', (await ReadSomeAsync(open))[0]);

        await forwarder.DisposeAsync();
        Assert.Empty(forwarder.Listening);
        var refused = await Assert.ThrowsAsync<SocketException>(async () =>
        {
            using var late = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await late.ConnectAsync(local);
        });
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        // The open connection ends with a reset, not a clean end of stream.
        var reset = await Assert.ThrowsAsync<SocketException>(async () => await ReadToEndAsync(open).WaitAsync(Timeout));
        Assert.Equal(SocketError.ConnectionReset, reset.SocketErrorCode);
        Assert.Equal(0, _guest.Open);
    }

    [Fact]
    public async Task A_connection_the_guest_refuses_is_reset()
    {
        // A port nothing listens on in the "guest": its Connect fails as the agent's would.
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        probe.Dispose();
        await using var forwarder = Forwarder();
        _guest.Publish(1, new Listener { Port = (uint)port, Ipv4 = true });
        var local = await ListeningAsync(forwarder, new IPEndPoint(IPAddress.Loopback, port));

        // The reset may come before the connect is seen complete, or on the first read.
        var reset = await Assert.ThrowsAsync<SocketException>(async () =>
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(local);
            await ReadToEndAsync(client).WaitAsync(Timeout);
        });
        Assert.Equal(SocketError.ConnectionReset, reset.SocketErrorCode);
    }

    private PodPortForwarder Forwarder() =>
        new(_guest, guestEndpoint => PodPortForwarder.Listen(new IPEndPoint(guestEndpoint.Address, 0)), NullLogger.Instance, "pod");

    private static async Task<IPEndPoint> ListeningAsync(PodPortForwarder forwarder, IPEndPoint guestEndpoint)
    {
        IPEndPoint? local = null;
        await Until(() => (local = forwarder.LocalEndPoint(guestEndpoint)) is not null, $"no listener for {guestEndpoint}");
        return local!;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds (no fixed sleep stands for an event).</summary>
    private static async Task Until(Func<bool> condition, string failure)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await Task.Delay(20);
        }
    }

    private int StartServer(Func<Socket, Task> serve)
    {
        var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Listen(64);
        _servers.Add(server);
        _ = Task.Run(async () =>
        {
            while (true)
            {
                Socket s;
                try
                {
                    s = await server.AcceptAsync();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }

                _ = Task.Run(async () =>
                {
                    using (s)
                    {
                        await serve(s);
                    }
                });
            }
        });
        return ((IPEndPoint)server.LocalEndPoint!).Port;
    }

    private static async Task EchoUntilEndAsync(Socket s)
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var n = await s.ReceiveAsync(buffer);
            if (n == 0)
            {
                s.Shutdown(SocketShutdown.Send);
                return;
            }

            await s.SendAsync(buffer.AsMemory(0, n));
        }
    }

    private static async Task<byte[]> ReadToEndAsync(Socket s)
    {
        var all = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int n;
        while ((n = await s.ReceiveAsync(buffer)) > 0)
        {
            all.Write(buffer, 0, n);
        }

        return all.ToArray();
    }

    private static async Task<byte[]> ReadSomeAsync(Socket s)
    {
        var buffer = new byte[16];
        var n = await s.ReceiveAsync(buffer).WaitAsync(Timeout);
        return buffer[..n];
    }

    /// <summary>The agent's side, in the test: listeners published by the test, connections over real sockets.</summary>
    private sealed class FakeGuest : IGuestPorts
    {
        private readonly Channel<Listeners> _updates = Channel.CreateUnbounded<Listeners>();
        private int _open;

        public int Open => Volatile.Read(ref _open);

        public void Publish(ulong generation, params Listener[] listeners)
        {
            var update = new Listeners { Generation = generation };
            update.Listeners_.AddRange(listeners);
            _updates.Writer.TryWrite(update);
        }

        public async Task<Listeners> WatchAsync(ulong generation, CancellationToken cancellationToken) =>
            await _updates.Reader.ReadAsync(cancellationToken);

        public async Task<IGuestConnection> ConnectAsync(int port, bool ipv6, CancellationToken cancellationToken)
        {
            // The test's servers listen on IPv4 only: both families reach them there.
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cancellationToken);
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            Interlocked.Increment(ref _open);
            return new Connection(socket, this);
        }

        private sealed class Connection(Socket socket, FakeGuest owner) : IGuestConnection
        {
            private int _closed;

            public async Task<ReadOnlyMemory<byte>> ReadAsync(CancellationToken cancellationToken)
            {
                var buffer = new byte[256 * 1024];
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
                return buffer.AsMemory(0, n);
            }

            public async Task WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
            {
                // Copied as the agent client does (into the request), before the caller reuses its buffer.
                var copy = data.ToArray();
                await socket.SendAsync(copy, SocketFlags.None, cancellationToken);
            }

            public Task CloseWriteAsync(CancellationToken cancellationToken)
            {
                socket.Shutdown(SocketShutdown.Send);
                return Task.CompletedTask;
            }

            public Task CloseAsync(CancellationToken cancellationToken)
            {
                if (Interlocked.Exchange(ref _closed, 1) == 0)
                {
                    socket.Dispose();
                    Interlocked.Decrement(ref owner._open);
                }

                return Task.CompletedTask;
            }
        }
    }
}
