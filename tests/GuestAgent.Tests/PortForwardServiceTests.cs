using System.Net;
using System.Net.Sockets;
using System.Text;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Agent.Protocol.V1;
using IPAddress = System.Net.IPAddress;
using ShimV2.GuestAgent.PortForward;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

/// <summary>
/// The guest half of port forwarding: which listening sockets /proc/net/tcp{,6} make reachable on loopback, and the
/// PortForward service's connections against a real TCP server on this machine's loopback.
/// </summary>
public sealed class PortForwardServiceTests
{
    private const string Tcp4 =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
        "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0\n" +
        "   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0\n" +
        // Bound to the pod IP only (10.87.0.5): not reached on loopback, under runc either.
        "   2: 0500570A:0051 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 102 1 0 100 0 0 10 0\n" +
        // An established connection (01), not a listener.
        "   3: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 103 1 0 100 0 0 10 0\n" +
        "   garbage\n";

    private const string Tcp6 =
        "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
        "   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 200 1 0 100 0 0 10 0\n" +
        "   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 201 1 0 100 0 0 10 0\n" +
        "   2: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 202 1 0 100 0 0 10 0\n";

    [Fact]
    public void Proc_net_tcp_gives_the_ports_loopback_reaches_with_their_families()
    {
        var listeners = ProcNetTcp.Parse(Tcp4, Tcp6);
        Assert.Equal(
            [
                new LoopbackListener(22, false, true),      // ::1 only
                new LoopbackListener(80, true, false),      // 127.0.0.1 only
                new LoopbackListener(8080, true, true),     // 0.0.0.0 and :: merged
                new LoopbackListener(9000, true, true),     // dual-stack ::
            ],
            listeners);
    }

    [Fact]
    public void Proc_net_tcp_without_ipv6_or_empty_gives_what_there_is()
    {
        Assert.Equal([new LoopbackListener(80, true, false), new LoopbackListener(8080, true, false)], ProcNetTcp.Parse(Tcp4, null));
        Assert.Empty(ProcNetTcp.Parse("", ""));
    }

    [Fact]
    public void This_machines_proc_net_tcp_shows_a_socket_the_test_listens_on()
    {
        using var server = Listen(out var port);
        var listeners = ProcNetTcp.Parse(File.ReadAllText("/proc/net/tcp"), File.Exists("/proc/net/tcp6") ? File.ReadAllText("/proc/net/tcp6") : null);
        Assert.Contains(listeners, l => l.Port == port && l.Ipv4);
    }

    [Fact]
    public async Task WatchListeners_answers_a_new_generation_and_waits_while_nothing_changes()
    {
        IReadOnlyList<LoopbackListener> now = [new LoopbackListener(80, true, false)];
        var service = new PortForwardService(NullLogger.Instance, () => Volatile.Read(ref now), TimeSpan.FromMilliseconds(10));
        var first = await service.WatchListenersAsync(new WatchListenersRequest(), CancellationToken.None);
        Assert.Equal((80u, true, false), (first.Listeners_.Single().Port, first.Listeners_.Single().Ipv4, first.Listeners_.Single().Ipv6));

        var waiting = service.WatchListenersAsync(new WatchListenersRequest { Generation = first.Generation }, CancellationToken.None);
        Assert.False(waiting.IsCompleted, "WatchListeners answered although nothing changed");
        Volatile.Write(ref now, [new LoopbackListener(80, true, false), new LoopbackListener(8080, true, true)]);
        var second = await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEqual(first.Generation, second.Generation);
        Assert.Equal([80u, 8080u], second.Listeners_.Select(l => l.Port));
    }

    [Fact]
    public async Task A_connection_carries_bytes_both_ways_with_half_close_and_ends_on_close()
    {
        using var server = Listen(out var port);
        var served = Task.Run(async () =>
        {
            using var s = await server.AcceptAsync();
            var got = await ReadToEndAsync(s);
            await s.SendAsync(Encoding.ASCII.GetBytes($"got {got.Length} bytes"));
            s.Shutdown(SocketShutdown.Send);
        });

        var service = new PortForwardService(NullLogger.Instance, () => []);
        var id = (await service.ConnectAsync(new PortConnectRequest { Port = (uint)port }, CancellationToken.None)).ConnectionId;
        var body = new byte[3 << 20];
        Random.Shared.NextBytes(body);
        for (var offset = 0; offset < body.Length; offset += 256 * 1024)
        {
            await service.WriteAsync(new PortWriteRequest { ConnectionId = id, Data = ByteString.CopyFrom(body, offset, 256 * 1024) }, CancellationToken.None);
        }

        service.CloseWrite(new PortConnectionRequest { ConnectionId = id });
        var answer = new MemoryStream();
        while (true)
        {
            var read = await service.ReadAsync(new PortReadRequest { ConnectionId = id, Len = 1 << 20 }, Context());
            if (read.Data.IsEmpty)
            {
                break;
            }

            read.Data.WriteTo(answer);
        }

        Assert.Equal($"got {body.Length} bytes", Encoding.ASCII.GetString(answer.ToArray()));
        await served.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, service.ConnectionCount);
        service.Close(new PortConnectionRequest { ConnectionId = id });
        Assert.Equal(0, service.ConnectionCount);
        var gone = await Assert.ThrowsAsync<AgentException>(() => service.ReadAsync(new PortReadRequest { ConnectionId = id, Len = 10 }, Context()));
        Assert.Equal(TtrpcStatusCode.NotFound, gone.Code);
    }

    [Fact]
    public async Task A_pending_read_ends_when_the_host_closes_and_a_refused_port_fails_with_the_reason()
    {
        using var server = Listen(out var port);
        var service = new PortForwardService(NullLogger.Instance, () => []);
        var id = (await service.ConnectAsync(new PortConnectRequest { Port = (uint)port }, CancellationToken.None)).ConnectionId;
        using var accepted = await server.AcceptAsync();
        var pending = service.ReadAsync(new PortReadRequest { ConnectionId = id, Len = 100 }, Context());
        Assert.False(pending.IsCompleted, "a read answered with no data sent");
        service.Close(new PortConnectionRequest { ConnectionId = id });
        Assert.True((await pending.WaitAsync(TimeSpan.FromSeconds(30))).Data.IsEmpty);

        server.Dispose();
        var refused = await Assert.ThrowsAsync<AgentException>(() => service.ConnectAsync(new PortConnectRequest { Port = (uint)port }, CancellationToken.None));
        Assert.Equal(TtrpcStatusCode.Unavailable, refused.Code);
        Assert.Contains("refused", refused.Message, StringComparison.OrdinalIgnoreCase);
    }

    private static TtrpcCallContext Context() => new("csharp.agent.v1.PortForward", "Read");

    private static Socket Listen(out int port)
    {
        var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Listen(8);
        port = ((IPEndPoint)server.LocalEndPoint!).Port;
        return server;
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
}
