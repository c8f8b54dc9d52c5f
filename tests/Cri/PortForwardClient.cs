using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;

namespace ShimV2.Cri;

/// <summary>
/// One forwarded connection through a CRI streaming server's port-forward URL (what CRI PortForward answers), as
/// kubelet's WebSocket protocol speaks it: <c>?port=N</c> in the URL, subprotocol <c>v4.channel.k8s.io</c>, every
/// binary message starting with its channel (0: data, 1: error for the first port), and each channel opening with
/// the port as two little-endian bytes. The protocol has no half-close: the server ends the forwarded connection
/// and closes the WebSocket after the pod side's end of stream (containerd waits a second for the other direction).
/// </summary>
public sealed class PortForwardClient : IAsyncDisposable
{
    public const string Subprotocol = "v4.channel.k8s.io";

    /// <summary>Largest data message sent: one WebSocket frame each.</summary>
    private const int MaxMessage = 32 * 1024;

    private readonly ClientWebSocket _socket;
    private readonly int _port;

    private PortForwardClient(ClientWebSocket socket, int port)
    {
        _socket = socket;
        _port = port;
    }

    /// <summary>Opens a forwarded connection to <paramref name="port"/> of the pod behind <paramref name="url"/>.</summary>
    public static async Task<PortForwardClient> ConnectAsync(string url, int port, CancellationToken cancellationToken)
    {
        var builder = new UriBuilder(url);
        builder.Scheme = builder.Scheme == "https" ? "wss" : "ws";
        builder.Query = $"port={port}";
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol(Subprotocol);
        socket.Options.SetRequestHeader("Origin", $"http://{builder.Host}");
        try
        {
            await socket.ConnectAsync(builder.Uri, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new PortForwardClient(socket, port);
    }

    /// <summary>Sends <paramref name="data"/> to the pod's port.</summary>
    public async Task SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var message = new byte[MaxMessage + 1];
        while (!data.IsEmpty)
        {
            var n = Math.Min(MaxMessage, data.Length);
            data.Span[..n].CopyTo(message.AsSpan(1));
            await _socket.SendAsync(message.AsMemory(0, n + 1), WebSocketMessageType.Binary, endOfMessage: true, cancellationToken);
            data = data[n..];
        }
    }

    /// <summary>Everything the pod's port sent, and the error channel's text, until the server closes.</summary>
    public async Task<PortForwardResult> ReadToEndAsync(CancellationToken cancellationToken)
    {
        var data = new MemoryStream();
        var error = new MemoryStream();
        var prefixes = new[] { new MemoryStream(), new MemoryStream() };
        var buffer = new byte[64 * 1024];
        var message = new MemoryStream();
        while (true)
        {
            ValueWebSocketReceiveResult result;
            try
            {
                result = await _socket.ReceiveAsync(buffer.AsMemory(), cancellationToken);
            }
            catch (WebSocketException) when (_socket.State is WebSocketState.Closed or WebSocketState.Aborted)
            {
                break;
            }

            if (result.MessageType == WebSocketMessageType.Close)
            {
                break;
            }

            message.Write(buffer, 0, result.Count);
            if (!result.EndOfMessage)
            {
                continue;
            }

            var bytes = message.ToArray();
            message.SetLength(0);
            if (bytes.Length == 0 || bytes[0] > 1)
            {
                continue;
            }

            var channel = bytes[0];
            var payload = bytes.AsSpan(1);
            // Each channel's first two bytes are the port it is for.
            var prefix = prefixes[channel];
            while (prefix.Length < 2 && !payload.IsEmpty)
            {
                prefix.WriteByte(payload[0]);
                payload = payload[1..];
                if (prefix.Length == 2 && BinaryPrimitives.ReadUInt16LittleEndian(prefix.ToArray()) != _port)
                {
                    throw new InvalidDataException($"channel {channel} is for port {BinaryPrimitives.ReadUInt16LittleEndian(prefix.ToArray())}, not {_port}");
                }
            }

            (channel == 0 ? data : error).Write(payload);
        }

        return new PortForwardResult(data.ToArray(), Encoding.UTF8.GetString(error.ToArray()));
    }

    public async ValueTask DisposeAsync()
    {
        if (_socket.State == WebSocketState.Open)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
                // The server may be gone already; the socket is disposed below either way.
            }
        }

        _socket.Dispose();
    }
}

/// <summary>What a forwarded connection brought back: the port's bytes and the server's error text (empty: none).</summary>
public sealed record PortForwardResult(byte[] Data, string Error);
