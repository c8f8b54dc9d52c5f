using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Ttrpc.Tests.Protos;
using ShimV2.Ttrpc.Wire;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

/// <summary>Handlers of the test service; gates let a test decide when Block calls answer.</summary>
public sealed class TestService
{
    public const string Name = "ttrpc.test.v1.TestService";

    private readonly ConcurrentDictionary<string, TaskCompletionSource> _gates = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _entered = new();

    public static Google.Protobuf.Reflection.ServiceDescriptor Descriptor =>
        TestServiceReflection.Descriptor.Services.Single(s => s.Name == "TestService");

    public TaskCompletionSource<bool> WaitCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Each Context call's context, with the time the handler ran.</summary>
    public ConcurrentQueue<(TtrpcCallContext Context, DateTimeOffset At)> Contexts { get; } = new();

    public TtrpcServiceDefinition Definition => TtrpcServiceDefinition
        .Create(Descriptor)
        .AddUnary<EchoRequest, EchoResponse>("Echo", (r, _) => Task.FromResult(new EchoResponse { Text = r.Text, Blob = r.Blob }))
        .AddUnary<EchoRequest, EchoResponse>("Block", BlockAsync)
        .AddUnary<EchoRequest, EchoResponse>("Wait", WaitAsync)
        .AddUnary<EchoRequest, Empty>("Fail", Fail)
        .AddUnary<EchoRequest, EchoResponse>("Nothing", (_, _) => Task.FromResult<EchoResponse>(null!))
        .AddUnary<EchoRequest, EchoResponse>("Big", (r, _) => Task.FromResult(new EchoResponse { Blob = ByteString.CopyFrom(new byte[r.Size]) }))
        .AddUnary<EchoRequest, EchoResponse>("Context", (_, c) =>
        {
            Contexts.Enqueue((c, DateTimeOffset.UtcNow));
            return Task.FromResult(new EchoResponse
            {
                Text = $"{c.Service}/{c.Method} deadline={(c.Deadline is null ? "none" : "set")} k={c.GetMetadata("K") ?? "-"} n={c.Metadata.Count}",
            });
        })
        .Build();

    /// <summary>Completes when a Block call for <paramref name="gate"/> has started.</summary>
    public Task Entered(string gate) => Entry(_entered, gate).Task.Within();

    public void Open(string gate) => Entry(_gates, gate).TrySetResult();

    private static TaskCompletionSource Entry(ConcurrentDictionary<string, TaskCompletionSource> map, string key) =>
        map.GetOrAdd(key, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    private async Task<EchoResponse> BlockAsync(EchoRequest request, TtrpcCallContext context)
    {
        Entry(_entered, request.Text).TrySetResult();
        await Entry(_gates, request.Text).Task.WaitAsync(context.CancellationToken);
        return new EchoResponse { Text = request.Text };
    }

    private async Task<EchoResponse> WaitAsync(EchoRequest request, TtrpcCallContext context)
    {
        Entry(_entered, request.Text).TrySetResult();
        try
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }
        finally
        {
            WaitCancelled.TrySetResult(context.CancellationToken.IsCancellationRequested);
        }

        return new EchoResponse();
    }

    private static Task<Empty> Fail(EchoRequest request, TtrpcCallContext context) => request.Text switch
    {
        "notfound" => throw new TtrpcException(TtrpcStatusCode.NotFound, "process already finished"),
        "boom" => throw new InvalidOperationException("boom"),
        "async" => Task.FromException<Empty>(new IOException("disk on fire")),
        "ok-code" => throw new TtrpcException(TtrpcStatusCode.Ok, "an error that claims to be OK"),
        "cancelled" => throw new OperationCanceledException("the handler gave up"),
        _ when request.Text.StartsWith("code:", StringComparison.Ordinal) => throw new TtrpcException(
            (TtrpcStatusCode)int.Parse(request.Text.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture),
            request.Text.Split(':', 3)[2]),
        _ => Task.FromResult(new Empty()),
    };
}

/// <summary>Two connected unix stream sockets (a socketpair) and a listener on a temp path.</summary>
public sealed class UnixListener : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("ttrpc-");

    public UnixListener()
    {
        Path = System.IO.Path.Combine(_dir.FullName, "s.sock");
        Socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        Socket.Bind(new UnixDomainSocketEndPoint(Path));
        Socket.Listen(16);
    }

    public string Path { get; }

    public Socket Socket { get; }

    public static async Task<(Stream A, Stream B)> PairAsync()
    {
        using var listener = new UnixListener();
        var connecting = ConnectAsync(listener.Path);
        var accepted = await listener.Socket.AcceptAsync();
        var connected = await connecting;
        return (new NetworkStream(accepted, ownsSocket: true), new NetworkStream(connected, ownsSocket: true));
    }

    public static async Task<Socket> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    public void Dispose()
    {
        Socket.Dispose();
        _dir.Delete(recursive: true);
    }
}

/// <summary>A server on a socketpair, with a client and a raw peer available.</summary>
public sealed class Harness : IAsyncDisposable
{
    private readonly List<Task> _served = [];
    private readonly List<UnixListener> _listeners = [];

    private Harness(TestService service, TtrpcServer server, ILogger logger)
    {
        Service = service;
        Server = server;
        Logger = logger;
    }

    /// <summary>The handlers the server runs (its gates are the ones the tests open).</summary>
    public TestService Service { get; }

    public TtrpcServer Server { get; }

    public ILogger Logger { get; }

    public static Harness Create(ITestOutputHelper output, TtrpcServerOptions? options = null)
    {
        var logger = new XunitLogger(output);
        var service = new TestService();
        return new Harness(service, new TtrpcServer([service.Definition], logger, options), logger);
    }

    /// <summary>Serves one end of a socketpair; returns the other end.</summary>
    public async Task<(Stream Peer, Task Served)> ServeAsync()
    {
        var (a, b) = await UnixListener.PairAsync();
        var served = Server.ServeConnectionAsync(a);
        _served.Add(served);
        return (b, served);
    }

    /// <summary>Serves a listening unix socket, as the shim does; the harness closes it at the end.</summary>
    public (UnixListener Listener, Task Serving) Listen(Func<Socket, bool>? admit = null)
    {
        var listener = new UnixListener();
        _listeners.Add(listener);
        var serving = Server.ServeAsync(listener.Socket, admit);
        _served.Add(serving);
        return (listener, serving);
    }

    public async Task<TtrpcClient> ClientAsync() => new((await ServeAsync()).Peer, Logger);

    public async Task<RawPeer> RawAsync() => new((await ServeAsync()).Peer);

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        await Task.WhenAll(_served).Within();
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }
    }
}

/// <summary>Speaks frames byte by byte, to test what the other side does with exact (or broken) input.</summary>
public sealed class RawPeer(Stream stream) : IAsyncDisposable
{

    public Stream Stream { get; } = stream;

    public static byte[] Frame(uint length, uint streamId, byte type, byte flags, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[10 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, length);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), streamId);
        frame[8] = type;
        frame[9] = flags;
        payload.CopyTo(frame.AsSpan(10));
        return frame;
    }

    public static byte[] Frame(uint streamId, byte type, ReadOnlySpan<byte> payload) =>
        Frame((uint)payload.Length, streamId, type, 0, payload);

    public static byte[] RequestFrame(uint streamId, string method, IMessage message, long timeoutNano = 0) =>
        Frame(streamId, 1, new Request
        {
            Service = TestService.Name,
            Method = method,
            Payload = message.ToByteString(),
            TimeoutNano = timeoutNano,
        }.ToByteArray());

    public async Task SendAsync(byte[] bytes) => await Stream.WriteAsync(bytes);

    /// <summary>Half-closes the connection: the other side reads end of stream.</summary>
    public void ShutdownSend() => ((NetworkStream)Stream).Socket.Shutdown(SocketShutdown.Send);

    /// <summary>Reads one frame: header fields and payload.</summary>
    public async Task<(uint StreamId, byte Type, byte Flags, byte[] Payload)> ReadFrameAsync()
    {
        var header = new byte[10];
        await Stream.ReadExactlyAsync(header).AsTask().Within();
        var payload = new byte[BinaryPrimitives.ReadUInt32BigEndian(header)];
        await Stream.ReadExactlyAsync(payload).AsTask().Within();
        return (BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4)), header[8], header[9], payload);
    }

    /// <summary>Reads one frame with its header, exactly as sent.</summary>
    public async Task<byte[]> ReadRawFrameAsync()
    {
        var header = new byte[10];
        await Stream.ReadExactlyAsync(header).AsTask().Within();
        var frame = new byte[10 + BinaryPrimitives.ReadUInt32BigEndian(header)];
        header.CopyTo(frame, 0);
        await Stream.ReadExactlyAsync(frame.AsMemory(10)).AsTask().Within();
        return frame;
    }

    public async Task<(uint StreamId, Response Response)> ReadResponseAsync()
    {
        var (id, type, _, payload) = await ReadFrameAsync();
        Assert.Equal(2, type);
        return (id, Response.Parser.ParseFrom(payload));
    }

    /// <summary>True when the other side closed the connection (EOF).</summary>
    public async Task<bool> ClosedAsync()
    {
        var buffer = new byte[1];
        try
        {
            return await Stream.ReadAsync(buffer).AsTask().Within() == 0;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public ValueTask DisposeAsync() => Stream.DisposeAsync();
}

/// <summary>Bounded waits: a broken test fails in seconds instead of hanging the run.</summary>
public static class Bounded
{
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    public static Task Within(this Task task) => task.WaitAsync(Limit);

    public static Task<T> Within<T>(this Task<T> task) => task.WaitAsync(Limit);
}

/// <summary>Library logs into the test output.</summary>
public sealed class XunitLogger(ITestOutputHelper output) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        try
        {
            output.WriteLine($"{logLevel}: {formatter(state, exception)}{(exception is null ? "" : " | " + exception.GetType().Name + ": " + exception.Message)}");
        }
        catch (InvalidOperationException)
        {
            // The test has finished.
        }
    }
}
