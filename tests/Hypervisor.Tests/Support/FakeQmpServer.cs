using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>A scripted QMP peer on a unix socket: the test sends each line and reads each command itself.</summary>
public sealed class FakeQmpServer : IDisposable
{
    public const string Greeting =
        """{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}""";

    private readonly Socket listener;

    public FakeQmpServer(string directory)
    {
        SocketPath = System.IO.Path.Combine(directory, "qmp.sock");
        listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        listener.Listen(4);
    }

    public string SocketPath { get; }

    public async Task<Connection> AcceptAsync(CancellationToken ct) => new(await listener.AcceptAsync(ct));

    public void Dispose() => listener.Dispose();

    public sealed class Connection : IAsyncDisposable
    {
        private readonly Socket socket;
        private readonly NetworkStream stream;
        private readonly StreamReader reader;

        public Connection(Socket socket)
        {
            this.socket = socket;
            stream = new NetworkStream(socket, ownsSocket: true);
            reader = new StreamReader(stream, new UTF8Encoding(false), false, 1024, leaveOpen: true);
        }

        public async Task SendAsync(string json, CancellationToken ct)
        {
            await stream.WriteAsync(Encoding.UTF8.GetBytes(json + "\r\n"), ct);
            await stream.FlushAsync(ct);
        }

        /// <summary>Reads the next command the client sent.</summary>
        public async Task<Received> ReceiveAsync(CancellationToken ct)
        {
            var line = await reader.ReadLineAsync(ct) ?? throw new EndOfStreamException("client closed the qmp connection");
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            return new Received(
                line,
                root.GetProperty("execute").GetString()!,
                root.TryGetProperty("id", out var id) ? id.GetInt64() : null,
                root.TryGetProperty("arguments", out var args) ? args.Clone() : null);
        }

        /// <summary>Reads a command, checks its name and answers it with <paramref name="returnJson"/>.</summary>
        public async Task<Received> ExpectAsync(string command, string returnJson, CancellationToken ct)
        {
            var received = await ReceiveAsync(ct);
            Assert.Equal(command, received.Execute);
            await ReplyAsync(received, returnJson, ct);
            return received;
        }

        public Task ReplyAsync(Received to, string returnJson, CancellationToken ct) =>
            SendAsync($$"""{"return": {{returnJson}}, "id": {{to.Id}}}""", ct);

        public Task ErrorAsync(Received to, string errorClass, string desc, CancellationToken ct) =>
            SendAsync($$"""{"error": {"class": "{{errorClass}}", "desc": "{{desc}}"}, "id": {{to.Id}}}""", ct);

        public Task EventAsync(string name, string? dataJson, CancellationToken ct) =>
            SendAsync(
                dataJson is null
                    ? $$"""{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": "{{name}}"}"""
                    : $$"""{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": "{{name}}", "data": {{dataJson}}}""",
                ct);

        /// <summary>Greets and answers qmp_capabilities, as QEMU does on connect.</summary>
        public async Task HandshakeAsync(CancellationToken ct)
        {
            await SendAsync(Greeting, ct);
            await ExpectAsync("qmp_capabilities", "{}", ct);
        }

        /// <summary>Drops the connection at once (RST rather than a polite close is not needed: EOF is what QEMU gives).</summary>
        public void Drop()
        {
            socket.Shutdown(SocketShutdown.Both);
            socket.Close();
        }

        public async ValueTask DisposeAsync()
        {
            reader.Dispose();
            await stream.DisposeAsync();
        }
    }

    public sealed record Received(string Line, string Execute, long? Id, JsonElement? Arguments);
}
