using System.Buffers;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace ShimV2.Cri;

/// <summary>
/// How a streamed exec or attach ended, from the error channel (3). With <c>v4.channel.k8s.io</c> the server writes
/// a Kubernetes <c>metav1.Status</c> JSON: <c>"status":"Success"</c>, or <c>"Failure"</c> with reason
/// <c>NonZeroExitCode</c> and the code in <c>details.causes[reason=ExitCode].message</c>. The pre-v4
/// <c>channel.k8s.io</c> writes nothing on success and the error's text on failure (no exit code).
/// </summary>
/// <param name="ExitCode">The command's exit code when the server said it, else null.</param>
/// <param name="Message">The status message or error text ("" on success).</param>
/// <param name="Raw">What the error channel carried, as text.</param>
public sealed record StreamExit(int? ExitCode, string Message, string Raw);

/// <summary>
/// A client for the CRI streaming server's Exec and Attach URLs (containerd serves them with kubelet's
/// <c>cri/streaming</c> package) over WebSocket, as kubelet's and kubectl's websocket transports speak it: the
/// subprotocol <c>v4.channel.k8s.io</c> (or, offered second, <c>channel.k8s.io</c>), one binary message per write,
/// its first byte the stream: 0 stdin, 1 stdout, 2 stderr, 3 error (the exit status), 4 resize
/// (<c>{"Width":w,"Height":h}</c>). The server ends the session by writing the status and closing. v4 has no way to
/// half-close stdin: a command reading stdin to EOF ends when the session is closed (or, under a TTY, on ^D).
/// </summary>
public sealed class StreamingClient : IAsyncDisposable
{
    public const string V4Protocol = "v4.channel.k8s.io";
    public const string V1Protocol = "channel.k8s.io";

    private const byte StdinChannel = 0;
    private const byte StdoutChannel = 1;
    private const byte StderrChannel = 2;
    private const byte ErrorChannel = 3;
    private const byte ResizeChannel = 4;

    private readonly ClientWebSocket _socket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly object _lock = new();
    private readonly MemoryStream _stdout = new();
    private readonly MemoryStream _stderr = new();
    private readonly MemoryStream _error = new();
    private readonly TaskCompletionSource<StreamExit> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _receive;

    private StreamingClient(ClientWebSocket socket) => _socket = socket;

    /// <summary>The subprotocol the server chose.</summary>
    public string Protocol => _socket.SubProtocol ?? "";

    /// <summary>Everything received on stdout so far, as UTF-8 text.</summary>
    public string Stdout => Text(_stdout);

    /// <summary>Everything received on stderr so far, as UTF-8 text.</summary>
    public string Stderr => Text(_stderr);

    /// <summary>Completes when the server has closed the session, with the status it wrote on the error channel;
    /// faults if the connection broke without a close.</summary>
    public Task<StreamExit> Exit => _exit.Task;

    /// <summary>Opens the session at a URL from CRI Exec or Attach (http://host:port/exec/TOKEN; the token is
    /// good for one connection, within the streaming server's timeout).</summary>
    public static async Task<StreamingClient> ConnectAsync(string url, CancellationToken cancel)
    {
        var uri = new UriBuilder(url);
        uri.Scheme = uri.Scheme switch
        {
            "http" => "ws",
            "https" => "wss",
            _ => uri.Scheme,
        };
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol(V4Protocol);
        socket.Options.AddSubProtocol(V1Protocol);
        try
        {
            await socket.ConnectAsync(uri.Uri, cancel);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var session = new StreamingClient(socket);
        session._receive = session.ReceiveLoopAsync();
        return session;
    }

    /// <summary>Writes <paramref name="text"/> (UTF-8) to the process's stdin.</summary>
    public Task SendStdinAsync(string text, CancellationToken cancel = default) =>
        SendAsync(StdinChannel, Encoding.UTF8.GetBytes(text), cancel);

    /// <summary>Writes raw bytes to the process's stdin (e.g. ^D, 0x04, under a TTY).</summary>
    public Task SendStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancel = default) =>
        SendAsync(StdinChannel, data, cancel);

    /// <summary>Asks for a terminal size (TTY sessions): the runtime's ResizePty.</summary>
    public Task ResizeAsync(int width, int height, CancellationToken cancel = default) =>
        SendAsync(ResizeChannel, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{{\"Width\":{width},\"Height\":{height}}}")), cancel);

    /// <summary>Waits until stdout (or, with <paramref name="stderr"/>, stderr) contains <paramref name="text"/>;
    /// fails with what did arrive once <paramref name="timeout"/> has passed or the session ended without it.</summary>
    public async Task<string> WaitForOutputAsync(string text, TimeSpan timeout, bool stderr = false)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                changed = _changed.Task;
            }

            var seen = stderr ? Stderr : Stdout;
            if (seen.Contains(text, StringComparison.Ordinal))
            {
                return seen;
            }

            if (_exit.Task.IsCompleted)
            {
                throw new TimeoutException($"the session ended ({Describe()}) before {(stderr ? "stderr" : "stdout")} had \"{text}\"; it has: \"{seen}\"");
            }

            try
            {
                await changed.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{(stderr ? "stderr" : "stdout")} did not have \"{text}\" within {timeout.TotalSeconds:0} s; it has: \"{seen}\" (stderr: \"{Stderr}\")");
            }
        }
    }

    /// <summary>Waits for the server to end the session; fails with what arrived if it does not within
    /// <paramref name="timeout"/>.</summary>
    public async Task<StreamExit> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            return await _exit.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"the session did not end within {timeout.TotalSeconds:0} s; stdout: \"{Stdout}\", stderr: \"{Stderr}\"");
        }
    }

    /// <summary>Closes the session from our side (a v4 client's only way to end stdin).</summary>
    public async Task CloseAsync(CancellationToken cancel = default)
    {
        if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
        {
            try
            {
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", cancel);
            }
            catch (WebSocketException)
            {
                // The server closed first: nothing more to say.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_receive is not null)
        {
            try
            {
                await _receive;
            }
            catch (Exception e) when (e is OperationCanceledException or WebSocketException)
            {
                // Ending the session is what was asked.
            }
        }

        _socket.Dispose();
        _sendLock.Dispose();
        _stop.Dispose();
    }

    private async Task SendAsync(byte channel, ReadOnlyMemory<byte> data, CancellationToken cancel)
    {
        var message = new byte[data.Length + 1];
        message[0] = channel;
        data.CopyTo(message.AsMemory(1));
        await _sendLock.WaitAsync(cancel);
        try
        {
            await _socket.SendAsync(message, WebSocketMessageType.Binary, endOfMessage: true, cancel);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new ArrayBufferWriter<byte>();
        try
        {
            while (true)
            {
                buffer.ResetWrittenCount();
                ValueWebSocketReceiveResult result;
                do
                {
                    result = await _socket.ReceiveAsync(buffer.GetMemory(64 * 1024), _stop.Token);
                    buffer.Advance(result.Count);
                }
                while (!result.EndOfMessage);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    break;
                }

                Deliver(buffer.WrittenSpan, result.MessageType == WebSocketMessageType.Text);
            }

            if (_socket.State == WebSocketState.CloseReceived)
            {
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", _stop.Token);
            }

            _exit.TrySetResult(ParseExit(Text(_error)));
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
            // x/net/websocket servers often drop the TCP connection right after their close frame: a session
            // that has written its status ended as the server meant it to.
            var error = Text(_error);
            if (error.Length > 0 || e is WebSocketException { WebSocketErrorCode: WebSocketError.ConnectionClosedPrematurely })
            {
                _exit.TrySetResult(ParseExit(error));
            }
            else
            {
                _exit.TrySetException(new IOException($"streaming session broke: {e.Message}", e));
            }
        }
        finally
        {
            Signal();
        }
    }

    private void Deliver(ReadOnlySpan<byte> message, bool base64)
    {
        if (message.IsEmpty)
        {
            return;
        }

        byte channel;
        byte[] data;
        if (base64)
        {
            // base64.channel.k8s.io: the channel as an ASCII digit, then base64 (we do not offer it, but a server
            // that picks it anyway should still be understood).
            channel = (byte)(message[0] - (byte)'0');
            data = Convert.FromBase64String(Encoding.ASCII.GetString(message[1..]));
        }
        else
        {
            channel = message[0];
            data = message[1..].ToArray();
        }

        lock (_lock)
        {
            var target = channel switch
            {
                StdoutChannel => _stdout,
                StderrChannel => _stderr,
                ErrorChannel => _error,
                _ => null,
            };
            target?.Write(data);
        }

        Signal();
    }

    private void Signal()
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    private string Text(MemoryStream stream)
    {
        lock (_lock)
        {
            return Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length);
        }
    }

    private string Describe() => _exit.Task.IsCompletedSuccessfully ? $"exit {_exit.Task.Result}" : "connection broke";

    private StreamExit ParseExit(string raw)
    {
        if (raw.Length == 0)
        {
            // v4 always writes a status; pre-v4 writes nothing on success.
            return Protocol == V4Protocol ? new StreamExit(null, "no status written", raw) : new StreamExit(0, "", raw);
        }

        if (Protocol != V4Protocol)
        {
            return new StreamExit(null, raw, raw);
        }

        try
        {
            using var json = JsonDocument.Parse(raw);
            var root = json.RootElement;
            var status = root.TryGetProperty("status", out var s) ? s.GetString() : null;
            var message = root.TryGetProperty("message", out var m) ? m.GetString() ?? "" : "";
            if (status == "Success")
            {
                return new StreamExit(0, message, raw);
            }

            if (root.TryGetProperty("details", out var details) && details.TryGetProperty("causes", out var causes)
                && causes.ValueKind == JsonValueKind.Array)
            {
                foreach (var cause in causes.EnumerateArray())
                {
                    if (cause.TryGetProperty("reason", out var reason) && reason.GetString() == "ExitCode"
                        && cause.TryGetProperty("message", out var code)
                        && int.TryParse(code.GetString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var exitCode))
                    {
                        return new StreamExit(exitCode, message, raw);
                    }
                }
            }

            return new StreamExit(null, message, raw);
        }
        catch (JsonException)
        {
            return new StreamExit(null, raw, raw);
        }
    }
}
