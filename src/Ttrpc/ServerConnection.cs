using System.Diagnostics.CodeAnalysis;
using System.Net.Sockets;
using Google.Protobuf;
using Google.Rpc;
using ShimV2.Ttrpc.Wire;

namespace ShimV2.Ttrpc;

/// <summary>
/// One served connection: a reader loop that dispatches requests (each handler runs on its own task), and a
/// writer loop fed by a channel that writes the answers in completion order.
/// </summary>
[SuppressMessage("Design", "CA1001", Justification =
    "The sources have no timer; handlers still running after the connection ended must keep their callbacks.")]
internal sealed class ServerConnection
{
    // CancellationTokenSource.CancelAfter takes at most uint.MaxValue - 1 milliseconds.
    private static readonly TimeSpan MaxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private static readonly Status OkStatus = new();

    private readonly TtrpcServer _server;
    private readonly Stream _stream;
    private readonly FrameWriter _writer = new();
    private readonly CancellationTokenSource _calls = new(); // cancelled when the connection closes
    private readonly CancellationTokenSource _io = new();    // stops the loops on abort
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _lock = new();
    private int _active;
    private bool _draining;
    private int _aborted;
    private uint _lastStreamId;

    public ServerConnection(TtrpcServer server, Stream stream)
    {
        _server = server;
        _stream = stream;
    }

    /// <summary>Completes after the connection has ended and ConnectionClosed was raised.</summary>
    public Task Closed => _closed.Task;

    public void MarkClosed() => _closed.TrySetResult();

    public async Task RunAsync()
    {
        var writer = RunWriterAsync();
        try
        {
            await ReadLoopAsync();
        }
        finally
        {
            // EOF, a broken frame, an I/O error, or the stream was closed by a graceful close: stop everything.
            Abort();
            await writer;
        }
    }

    /// <summary>Graceful close: new requests are refused; the connection closes once no call is in flight.</summary>
    public void BeginGracefulClose()
    {
        bool idle;
        lock (_lock)
        {
            _draining = true;
            idle = _active == 0;
        }

        if (idle)
        {
            // The writer writes what is queued, then closes the stream, which ends the reader.
            _writer.Complete();
        }
    }

    /// <summary>Closes the connection now; in-flight calls are cancelled and their answers dropped.</summary>
    public void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }

        _writer.Complete();
        _io.Cancel();
        try
        {
            _stream.Dispose();
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Log.WriteFailed(_server.Logger, e);
        }

        // Handlers' cancellation callbacks run on the thread pool, not inside the loops.
        _ = _calls.CancelAsync();
    }

    private async Task RunWriterAsync()
    {
        try
        {
            await _writer.RunAsync(_stream, _io.Token);
        }
        catch (Exception e) when (Volatile.Read(ref _aborted) == 0)
        {
            Log.WriteFailed(_server.Logger, e);
        }
        catch (Exception)
        {
            // Closing: the stream went away under the writer.
        }
        finally
        {
            // Writer done (drained after a graceful close, or failed): the connection is over.
            Abort();
        }
    }

    private async Task ReadLoopAsync()
    {
        var reader = new FrameReader(_stream, _server.MaxMessageSize);
        while (true)
        {
            Frame? frame;
            try
            {
                frame = await reader.ReadAsync(_io.Token);
            }
            catch (Exception e) when (Volatile.Read(ref _aborted) != 0 && e is OperationCanceledException or IOException
                                          or ObjectDisposedException or SocketException)
            {
                return;
            }
            catch (Exception e) when (e is EndOfStreamException or IOException or SocketException or ObjectDisposedException)
            {
                Log.ReadFailed(_server.Logger, e);
                return;
            }

            if (frame is not { } f)
            {
                return;
            }

            HandleFrame(f);
        }
    }

    private void HandleFrame(Frame frame)
    {
        var header = frame.Header;
        if (frame.Oversized)
        {
            Reject(header.StreamId, TtrpcStatusCode.ResourceExhausted,
                StatusMapping.OversizedMessage(header.Length, _server.MaxMessageSize));
            return;
        }

        if (header.StreamId % 2 != 1)
        {
            Reject(header.StreamId, TtrpcStatusCode.InvalidArgument, "StreamID must be odd for client initiated streams");
            return;
        }

        switch ((FrameType)header.Type)
        {
            case FrameType.Request:
                HandleRequest(header.StreamId, frame.Payload);
                break;
            case FrameType.Data:
                // Only unary methods are served: no stream is ever open for data.
                Reject(header.StreamId, TtrpcStatusCode.InvalidArgument, "StreamID is no longer active");
                break;
            default:
                // As ttrpc: ignore other types for forward compatibility.
                Log.FrameIgnored(_server.Logger, header.Type, header.StreamId);
                break;
        }
    }

    private void HandleRequest(uint streamId, byte[] payload)
    {
        if (streamId <= _lastStreamId)
        {
            Reject(streamId, TtrpcStatusCode.InvalidArgument, "StreamID cannot be re-used and must increment");
            return;
        }

        _lastStreamId = streamId;
        Request request;
        try
        {
            request = Request.Parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException e)
        {
            Reject(streamId, TtrpcStatusCode.InvalidArgument, "unmarshal request error: " + e.Message);
            return;
        }

        if (!_server.TryFindMethod(request.Service, request.Method, out var handler, out var error))
        {
            Reject(streamId, TtrpcStatusCode.Unimplemented, error!);
            return;
        }

        lock (_lock)
        {
            if (!_draining)
            {
                _active++;
            }
            else
            {
                handler = null;
            }
        }

        if (handler is null)
        {
            Reject(streamId, TtrpcStatusCode.Unavailable, "ttrpc: server shutting down");
            return;
        }

        var call = CreateContext(request);
        _ = Task.Run(() => RunCallAsync(streamId, request, handler, call.Context, call.Linked, call.Deadline));
    }

    private (TtrpcCallContext Context, CancellationTokenSource Linked, CancellationTokenSource? Deadline) CreateContext(Request request)
    {
        var metadata = new KeyValuePair<string, string>[request.Metadata.Count];
        for (var i = 0; i < metadata.Length; i++)
        {
            metadata[i] = new(request.Metadata[i].Key, request.Metadata[i].Value);
        }

        DateTimeOffset? deadline = null;
        CancellationTokenSource? deadlineSource = null;
        if (request.TimeoutNano != 0)
        {
            // As Go's context.WithTimeout: a negative timeout has already expired.
            var timeout = TimeSpan.FromTicks(Math.Max(0, request.TimeoutNano) / TimeSpan.NanosecondsPerTick);
            deadline = DateTimeOffset.UtcNow + timeout;
            deadlineSource = new CancellationTokenSource();
            if (timeout == TimeSpan.Zero)
            {
                deadlineSource.Cancel();
            }
            else if (timeout <= MaxTimer)
            {
                deadlineSource.CancelAfter(timeout);
            }
        }

        var linked = deadlineSource is null
            ? CancellationTokenSource.CreateLinkedTokenSource(_calls.Token)
            : CancellationTokenSource.CreateLinkedTokenSource(_calls.Token, deadlineSource.Token);
        var context = new TtrpcCallContext(request.Service, request.Method, metadata, deadline, deadlineSource, linked.Token);
        return (context, linked, deadlineSource);
    }

    private async Task RunCallAsync(
        uint streamId,
        Request request,
        UnaryMethodHandler handler,
        TtrpcCallContext context,
        CancellationTokenSource linked,
        CancellationTokenSource? deadline)
    {
        byte[] answer;
        try
        {
            Status status;
            IMessage? response = null;
            try
            {
                response = await handler(request.Payload, context);
                status = OkStatus;
            }
            catch (Exception e)
            {
                status = StatusMapping.FromException(e, context);
                if (e is TtrpcException or OperationCanceledException or InvalidProtocolBufferException)
                {
                    Log.HandlerStatus(_server.Logger, request.Service, request.Method,
                        (TtrpcStatusCode)status.Code, status.Message);
                }
                else
                {
                    Log.HandlerFailed(_server.Logger, e, request.Service, request.Method);
                }
            }

            // ttrpc always sends a status, OK included (old clients insist on one).
            answer = SerializeResponse(status, response);
            if (answer.Length > _server.MaxMessageSize)
            {
                var message = StatusMapping.OversizedMessage(answer.Length, _server.MaxMessageSize);
                Log.HandlerStatus(_server.Logger, request.Service, request.Method, TtrpcStatusCode.ResourceExhausted, message);
                answer = new Response { Status = StatusMapping.Create(TtrpcStatusCode.ResourceExhausted, message) }.ToByteArray();
            }
        }
        finally
        {
            linked.Dispose();
            deadline?.Dispose();
        }

        _writer.TryEnqueue(new OutgoingFrame(streamId, FrameType.Response, 0, answer));

        bool closeNow;
        lock (_lock)
        {
            _active--;
            closeNow = _draining && _active == 0;
        }

        if (closeNow)
        {
            _writer.Complete();
        }
    }

    /// <summary>
    /// The bytes of <c>new Response { Status = status, Payload = response.ToByteString() }</c>, with the answer
    /// serialized once, straight into place: stdio answers carry up to a MiB, and every copy counts in a guest
    /// without hardware virtualisation.
    /// </summary>
    internal static byte[] SerializeResponse(Status status, IMessage? response)
    {
        var statusSize = status.CalculateSize();
        var payloadSize = response?.CalculateSize() ?? 0;
        var size = 1 + CodedOutputStream.ComputeLengthSize(statusSize) + statusSize;
        if (payloadSize > 0)
        {
            size += 1 + CodedOutputStream.ComputeLengthSize(payloadSize) + payloadSize;
        }

        var buffer = GC.AllocateUninitializedArray<byte>(size);
        var output = new CodedOutputStream(buffer);
        output.WriteTag(Response.StatusFieldNumber, WireFormat.WireType.LengthDelimited);
        output.WriteMessage(status);
        if (payloadSize > 0)
        {
            output.WriteTag(Response.PayloadFieldNumber, WireFormat.WireType.LengthDelimited);
            output.WriteLength(payloadSize);
            response!.WriteTo(output);
        }

        output.CheckNoSpaceLeft();
        return buffer;
    }

    private void Reject(uint streamId, TtrpcStatusCode code, string message)
    {
        Log.FrameRejected(_server.Logger, streamId, code, message);
        var answer = new Response { Status = StatusMapping.Create(code, message) }.ToByteArray();
        _writer.TryEnqueue(new OutgoingFrame(streamId, FrameType.Response, 0, answer));
    }
}
