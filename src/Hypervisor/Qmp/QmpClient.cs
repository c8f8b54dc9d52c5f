using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace ShimV2.Hypervisor;

/// <summary>
/// A QMP connection: commands carry numeric ids and get their replies by id; events go to <see cref="Events"/>.
/// One reader loop owns the receiving side; sends are serialised.
/// </summary>
public sealed partial class QmpClient : IAsyncDisposable
{
    /// <summary>Events kept for a slow reader; older ones are dropped beyond this.</summary>
    public const int EventBacklog = 256;

    private readonly Stream stream;
    private readonly StreamReader reader;
    private readonly ILogger logger;
    private readonly SemaphoreSlim writeLock = new(1, 1);
    private readonly ConcurrentDictionary<long, Pending> pending = new();
    private readonly Channel<QmpEvent> events = Channel.CreateBounded<QmpEvent>(
        new BoundedChannelOptions(EventBacklog) { FullMode = BoundedChannelFullMode.DropOldest, SingleWriter = true });

    private readonly CancellationTokenSource closing = new();
    private Task readLoop = Task.CompletedTask;
    private QmpConnectionClosedException? closedError;
    private long nextId;
    private int disposed;

    private QmpClient(Stream stream, ILogger logger, QmpGreeting greeting)
    {
        this.stream = stream;
        this.logger = logger;
        reader = new StreamReader(stream, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: false, bufferSize: 4096, leaveOpen: true);
        Greeting = greeting;
    }

    public QmpGreeting Greeting { get; }

    /// <summary>Asynchronous events in arrival order. Completes when the connection closes.</summary>
    public ChannelReader<QmpEvent> Events => events.Reader;

    /// <summary>Completes when the connection has closed and every pending command has failed.</summary>
    public Task Completion => readLoop;

    /// <summary>Called on the reader loop for every event before it is queued; must not block.</summary>
    internal Action<QmpEvent>? EventObserver { get; set; }

    /// <summary>Connects to a QMP unix socket, reads the greeting and negotiates capabilities.</summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, ILogger logger, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return await OpenAsync(new NetworkStream(socket, ownsSocket: true), logger, ct);
    }

    /// <summary>Reads the greeting from a connected stream, starts the reader loop and sends qmp_capabilities.
    /// Takes ownership of <paramref name="stream"/>.</summary>
    public static async Task<QmpClient> OpenAsync(Stream stream, ILogger logger, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(logger);
        QmpClient? client = null;
        try
        {
            var greetingLine = await ReadGreetingLineAsync(stream, ct);
            var greeting = ParseGreeting(greetingLine);
            client = new QmpClient(stream, logger, greeting);
            LogGreeting(logger, greeting.Version);
            client.readLoop = client.ReadLoopAsync();
            await client.ExecuteAsync(new QmpCapabilities(), ct);
            return client;
        }
        catch
        {
            if (client is not null)
            {
                await client.DisposeAsync();
            }
            else
            {
                await stream.DisposeAsync();
            }

            throw;
        }
    }

    /// <summary>Sends a command and waits for its reply.</summary>
    /// <exception cref="QmpException">QEMU returned an error.</exception>
    /// <exception cref="QmpConnectionClosedException">The connection closed first.</exception>
    public async Task<TResult> ExecuteAsync<TResult>(QmpCommand<TResult> command, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(command);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        var id = Interlocked.Increment(ref nextId);
        var entry = new Pending(command.Name);
        pending[id] = entry;
        try
        {
            // The reader loop publishes closedError before it fails what is pending: either it sees this entry
            // or this check sees the error.
            if (Volatile.Read(ref closedError) is { } closed)
            {
                throw new QmpConnectionClosedException($"{closed.Message} before {command.Name}");
            }

            var message = Encode(command, id);
            LogSend(logger, command.Name, id);
            await writeLock.WaitAsync(ct);
            try
            {
                await stream.WriteAsync(message, ct);
                await stream.FlushAsync(ct);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                throw new QmpConnectionClosedException($"qmp connection closed while sending {command.Name}: {e.Message}", e);
            }
            finally
            {
                writeLock.Release();
            }

            var result = await entry.Reply.Task.WaitAsync(ct);
            return command.ReadResult(result);
        }
        finally
        {
            pending.TryRemove(id, out _);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return;
        }

        await closing.CancelAsync();
        await stream.DisposeAsync();
        try
        {
            await readLoop;
        }
        catch (Exception e)
        {
            LogReaderEnded(logger, e.Message);
        }

        reader.Dispose();
        writeLock.Dispose();
        closing.Dispose();
    }

    internal static byte[] Encode<TResult>(QmpCommand<TResult> command, long id)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("execute", command.Name);
            if (command.HasArguments)
            {
                writer.WriteStartObject("arguments");
                command.WriteArguments(writer);
                writer.WriteEndObject();
            }

            writer.WriteNumber("id", id);
            writer.WriteEndObject();
        }

        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    private static async Task<string> ReadGreetingLineAsync(Stream stream, CancellationToken ct)
    {
        // Byte by byte so nothing after the greeting is buffered away from the reader loop's StreamReader.
        var line = new List<byte>(256);
        var one = new byte[1];
        while (true)
        {
            var n = await stream.ReadAsync(one, ct);
            if (n == 0)
            {
                throw new QmpConnectionClosedException("qmp connection closed before the greeting");
            }

            if (one[0] == (byte)'\n')
            {
                return Encoding.UTF8.GetString(line.ToArray()).TrimEnd('\r');
            }

            line.Add(one[0]);
            if (line.Count > 64 * 1024)
            {
                throw new HypervisorException("qmp greeting too long: not a QMP socket?");
            }
        }
    }

    internal static QmpGreeting ParseGreeting(string line)
    {
        QmpGreetingMessage? message;
        try
        {
            message = JsonSerializer.Deserialize(line, QmpJsonContext.Default.QmpGreetingMessage);
        }
        catch (JsonException e)
        {
            throw new HypervisorException($"not a qmp greeting: {Truncate(line)}", e);
        }

        if (message?.Qmp?.Version?.Qemu is null)
        {
            throw new HypervisorException($"not a qmp greeting: {Truncate(line)}");
        }

        return new QmpGreeting(message.Qmp.Version, message.Qmp.Capabilities ?? []);
    }

    private async Task ReadLoopAsync()
    {
        Exception? failure = null;
        try
        {
            while (true)
            {
                string? line;
                try
                {
                    line = await reader.ReadLineAsync(closing.Token);
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
                {
                    break;
                }

                if (line is null)
                {
                    break;
                }

                if (line.Length > 0)
                {
                    Dispatch(line);
                }
            }
        }
        catch (Exception e)
        {
            failure = e;
            LogReaderEnded(logger, e.Message);
        }
        finally
        {
            var closed = new QmpConnectionClosedException(failure is null
                ? "qmp connection closed"
                : $"qmp connection failed: {failure.Message}");
            Interlocked.Exchange(ref closedError, closed);
            foreach (var entry in pending.Values)
            {
                entry.Reply.TrySetException(closed);
            }

            events.Writer.TryComplete();
        }
    }

    private void Dispatch(string line)
    {
        var message = QmpMessage.Parse(line);
        if (message.Event is { } evt)
        {
            LogEvent(logger, evt.Name);
            try
            {
                EventObserver?.Invoke(evt);
            }
            catch (Exception e)
            {
                LogObserverFailed(logger, evt.Name, e);
            }

            events.Writer.TryWrite(evt);
            return;
        }

        if (message.Kind == QmpMessageKind.Unparsable)
        {
            LogUnparsable(logger, line);
            return;
        }

        var entry = FindPending(message.Id, line);
        if (entry is null)
        {
            return;
        }

        if (message.Kind == QmpMessageKind.Return)
        {
            entry.Reply.TrySetResult(message.Return);
        }
        else
        {
            entry.Reply.TrySetException(new QmpException(entry.Command, message.ErrorClass, message.ErrorDesc));
        }
    }

    private Pending? FindPending(long? id, string line)
    {
        if (id is { } known)
        {
            if (pending.TryGetValue(known, out var entry))
            {
                return entry;
            }

            LogUnmatched(logger, line);
            return null;
        }

        // QEMU answers a message it could not parse without an id; that can only be for the oldest command in flight.
        var oldest = pending.OrderBy(p => p.Key).Select(p => p.Value).FirstOrDefault();
        if (oldest is null)
        {
            LogUnmatched(logger, line);
        }

        return oldest;
    }

    private static string Truncate(string line) => line.Length <= 200 ? line : line[..200] + "...";

    [LoggerMessage(Level = LogLevel.Debug, Message = "qmp greeting from qemu {Version}")]
    private static partial void LogGreeting(ILogger logger, QmpVersion version);

    [LoggerMessage(Level = LogLevel.Debug, Message = "qmp -> {Command} (id {Id})")]
    private static partial void LogSend(ILogger logger, string command, long id);

    [LoggerMessage(Level = LogLevel.Debug, Message = "qmp event {Event}")]
    private static partial void LogEvent(ILogger logger, string @event);

    [LoggerMessage(Level = LogLevel.Warning, Message = "qmp: unparsable message: {Line}")]
    private static partial void LogUnparsable(ILogger logger, string line);

    [LoggerMessage(Level = LogLevel.Debug, Message = "qmp: reply for no pending command: {Line}")]
    private static partial void LogUnmatched(ILogger logger, string line);

    [LoggerMessage(Level = LogLevel.Warning, Message = "qmp: event observer failed on {Event}")]
    private static partial void LogObserverFailed(ILogger logger, string @event, Exception exception);

    [LoggerMessage(Level = LogLevel.Debug, Message = "qmp reader ended: {Reason}")]
    private static partial void LogReaderEnded(ILogger logger, string reason);

    private sealed class Pending(string command)
    {
        public string Command { get; } = command;

        public TaskCompletionSource<JsonElement> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
