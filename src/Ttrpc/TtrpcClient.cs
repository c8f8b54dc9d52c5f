using System.Collections.Concurrent;
using System.Net.Sockets;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Ttrpc.Wire;

namespace ShimV2.Ttrpc;

/// <summary>
/// A TTRPC client on one connection. Calls may be made concurrently; each gets the next odd stream id and its
/// answer is matched by id, in whatever order the server answers.
/// </summary>
public sealed class TtrpcClient : IAsyncDisposable
{
    private const string UnixScheme = "unix://";

    // CancellationTokenSource.CancelAfter takes at most uint.MaxValue - 1 milliseconds.
    private static readonly TimeSpan MaxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly Stream _stream;
    private readonly ILogger _logger;
    private readonly FrameWriter _writer = new();
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<byte[]>> _pending = new();
    private readonly Lock _sendLock = new();
    private readonly CancellationTokenSource _io = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _reader;
    private readonly Task _writerLoop;
    private uint _nextStreamId = 1;
    private Exception? _abortReason;

    /// <summary>A client on a connected stream, which it owns and disposes.</summary>
    public TtrpcClient(Stream stream, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _logger = logger ?? NullLogger.Instance;
        _writerLoop = Task.Run(RunWriterAsync);
        _reader = Task.Run(ReadLoopAsync);
    }

    /// <summary>Completes (successfully) when the connection is closed, for whatever reason.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Connects to a unix socket; accepts a <c>unix://</c> prefix and <c>@</c> for the abstract namespace.</summary>
    /// <exception cref="TtrpcException">Unavailable: the socket could not be connected.</exception>
    public static Task<TtrpcClient> ConnectUnixAsync(string path, CancellationToken cancellationToken = default) =>
        ConnectUnixAsync(path, null, cancellationToken);

    /// <inheritdoc cref="ConnectUnixAsync(string, CancellationToken)"/>
    public static async Task<TtrpcClient> ConnectUnixAsync(string path, ILogger? logger, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var socketPath = path.StartsWith(UnixScheme, StringComparison.Ordinal) ? path[UnixScheme.Length..] : path;
        if (socketPath.StartsWith('@'))
        {
            socketPath = "\0" + socketPath[1..];
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new TtrpcException(TtrpcStatusCode.Unavailable, $"ttrpc: connect {path}: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new TtrpcClient(new NetworkStream(socket, ownsSocket: true), logger);
    }

    /// <summary>Calls <paramref name="service"/>/<paramref name="method"/> and waits for the answer.</summary>
    /// <exception cref="TtrpcException">
    /// The server answered a non-OK status (its code and message); Unavailable with the first abort reason when the
    /// connection was lost or aborted; DeadlineExceeded when <see cref="TtrpcCallOptions.Timeout"/> passed;
    /// ResourceExhausted when the request is larger than 4 MiB.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<TResponse> CallAsync<TRequest, TResponse>(
        string service,
        string method,
        TRequest request,
        TtrpcCallOptions? options = null,
        CancellationToken cancellationToken = default)
        where TRequest : IMessage
        where TResponse : IMessage<TResponse>, new()
    {
        ArgumentNullException.ThrowIfNull(request);
        var (streamId, payload) = await CallAsync(service, method, request.ToByteString(), options, cancellationToken);
        return StatusMapping.ParseMessage<TResponse>(streamId, payload);
    }

    /// <summary>
    /// The call on serialized messages: <paramref name="payload"/> is the request's bytes, the answer the response's
    /// (with the stream id, for error messages). Errors as <see cref="CallAsync{TRequest, TResponse}"/>.
    /// </summary>
    internal async Task<(uint StreamId, ByteString Payload)> CallAsync(
        string service,
        string method,
        ByteString payload,
        TtrpcCallOptions? options,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(service);
        ArgumentNullException.ThrowIfNull(method);
        cancellationToken.ThrowIfCancellationRequested();

        var timeout = options?.Timeout;
        if (timeout == System.Threading.Timeout.InfiniteTimeSpan)
        {
            timeout = null;
        }
        else if (timeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), timeout, "Timeout must be positive");
        }

        var wire = new Request { Service = service, Method = method, Payload = payload };
        if (timeout is { } t)
        {
            wire.TimeoutNano = t.Ticks > long.MaxValue / TimeSpan.NanosecondsPerTick
                ? long.MaxValue
                : t.Ticks * TimeSpan.NanosecondsPerTick;
        }

        if (options?.Metadata is { } metadata)
        {
            foreach (var pair in metadata)
            {
                wire.Metadata.Add(new KeyValue { Key = pair.Key, Value = pair.Value });
            }
        }

        var frame = wire.ToByteArray();
        if (frame.Length > FrameHeader.DefaultMaxPayload)
        {
            throw new TtrpcException(TtrpcStatusCode.ResourceExhausted,
                StatusMapping.OversizedMessage(frame.Length, FrameHeader.DefaultMaxPayload));
        }

        var answer = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        uint streamId;
        lock (_sendLock)
        {
            // Allocation and queueing under one lock: ids reach the wire in increasing order, as servers require.
            if (_abortReason is { } reason)
            {
                throw StatusMapping.Unavailable(reason);
            }

            streamId = _nextStreamId;
            _nextStreamId += 2;
            _pending[streamId] = answer;
            _writer.TryEnqueue(new OutgoingFrame(streamId, FrameType.Request, 0, frame));
        }

        var responseBytes = await WaitAsync(streamId, answer.Task, timeout, cancellationToken);
        return (streamId, StatusMapping.ParseResponse(streamId, responseBytes));
    }

    /// <summary>Closes the connection; the FIRST reason is kept and every pending and later call fails with it.</summary>
    public void Abort(Exception reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        lock (_sendLock)
        {
            if (_abortReason is not null)
            {
                return;
            }

            _abortReason = reason;
            _writer.Complete();
        }

        Log.ClientAborted(_logger, reason.Message);
        _io.Cancel();
        try
        {
            _stream.Dispose();
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Log.WriteFailed(_logger, e);
        }

        foreach (var streamId in _pending.Keys)
        {
            if (_pending.TryRemove(streamId, out var call))
            {
                call.TrySetException(StatusMapping.Unavailable(reason));
            }
        }

        _completion.TrySetResult();
    }

    public async ValueTask DisposeAsync()
    {
        Abort(new ObjectDisposedException(null, "ttrpc: client closed"));
        await Task.WhenAll(_reader, _writerLoop);
        _io.Dispose();
    }

    private async Task<byte[]> WaitAsync(uint streamId, Task<byte[]> answer, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        if (timeout is null && !cancellationToken.CanBeCanceled)
        {
            return await answer;
        }

        using var deadline = new CancellationTokenSource();
        if (timeout is { } t && t <= MaxTimer)
        {
            deadline.CancelAfter(t);
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        try
        {
            return await answer.WaitAsync(linked.Token);
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
            _pending.TryRemove(streamId, out _);
            cancellationToken.ThrowIfCancellationRequested();
            throw new TtrpcException(TtrpcStatusCode.DeadlineExceeded, StatusMapping.DeadlineExceededMessage);
        }
    }

    private async Task RunWriterAsync()
    {
        try
        {
            await _writer.RunAsync(_stream, _io.Token);
        }
        catch (Exception e)
        {
            Abort(e);
        }
    }

    private async Task ReadLoopAsync()
    {
        var reader = new FrameReader(_stream, FrameHeader.DefaultMaxPayload);
        try
        {
            while (true)
            {
                var next = await reader.ReadAsync(_io.Token);
                if (next is not { } frame)
                {
                    Abort(new IOException("ttrpc: connection closed"));
                    return;
                }

                var header = frame.Header;
                if ((FrameType)header.Type != FrameType.Response)
                {
                    Log.FrameIgnored(_logger, header.Type, header.StreamId);
                    continue;
                }

                if (!_pending.TryRemove(header.StreamId, out var call))
                {
                    Log.UnmatchedResponse(_logger, header.StreamId);
                    continue;
                }

                if (frame.Oversized)
                {
                    call.TrySetException(new TtrpcException(TtrpcStatusCode.ResourceExhausted,
                        StatusMapping.OversizedMessage(header.Length, FrameHeader.DefaultMaxPayload)));
                }
                else
                {
                    call.TrySetResult(frame.Payload);
                }
            }
        }
        catch (Exception e)
        {
            // After an abort this is the closed stream; Abort keeps the first reason either way.
            Abort(e);
        }
    }
}
