using System.Buffers;
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
    private readonly string _peer;
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
        _peer = PeerOf(stream);
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
        var reader = new FrameReader(_stream, _server.MaxMessageSize, pooled: true);
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

    private static void Release(Frame frame)
    {
        if (frame.Pooled)
        {
            ArrayPool<byte>.Shared.Return(frame.Payload);
        }
    }

    private void HandleFrame(Frame frame)
    {
        var header = frame.Header;
        if (frame.Header.Type == (byte)FrameType.Request && !frame.Oversized && header.StreamId % 2 == 1)
        {
            HandleRequest(frame);
            return;
        }

        Release(frame);
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

    /// <summary>Dispatches a request; the frame's buffer is released once its call has ended.</summary>
    private void HandleRequest(Frame frame)
    {
        var streamId = frame.Header.StreamId;
        if (streamId <= _lastStreamId)
        {
            Release(frame);
            Reject(streamId, TtrpcStatusCode.InvalidArgument, "StreamID cannot be re-used and must increment");
            return;
        }

        _lastStreamId = streamId;
        Request request;
        try
        {
            request = ParseRequest(frame.Payload, (int)frame.Header.Length);
        }
        catch (InvalidProtocolBufferException e)
        {
            Release(frame);
            Reject(streamId, TtrpcStatusCode.InvalidArgument, "unmarshal request error: " + e.Message);
            return;
        }

        if (!_server.TryFindMethod(request.Service, request.Method, out var handler, out var error))
        {
            Release(frame);
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
            Release(frame);
            Reject(streamId, TtrpcStatusCode.Unavailable, "ttrpc: server shutting down");
            return;
        }

        var call = CreateContext(request);
        _ = Task.Run(() => RunCallAsync(frame, request, handler, call.Context, call.Linked, call.Deadline));
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
        var context = new TtrpcCallContext(request.Service, request.Method, metadata, deadline, deadlineSource, _peer, linked.Token);
        return (context, linked, deadlineSource);
    }

    private async Task RunCallAsync(
        Frame frame,
        Request request,
        UnaryMethodHandler handler,
        TtrpcCallContext context,
        CancellationTokenSource linked,
        CancellationTokenSource? deadline)
    {
        OutgoingFrame answer;
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
                if (e is TtrpcException or Grpc.Core.RpcException or OperationCanceledException or InvalidProtocolBufferException)
                {
                    Log.HandlerStatus(_server.Logger, request.Service, request.Method,
                        (TtrpcStatusCode)status.Code, status.Message);
                }
                else
                {
                    Log.HandlerFailed(_server.Logger, e, request.Service, request.Method);
                }
            }

            // The request's bytes may be referenced by the handler until it is done, no longer.
            Release(frame);

            // ttrpc always sends a status, OK included (old clients insist on one).
            var size = ResponseSize(status, response, out _, out _);
            if (size > _server.MaxMessageSize)
            {
                var message = StatusMapping.OversizedMessage(size, _server.MaxMessageSize);
                Log.HandlerStatus(_server.Logger, request.Service, request.Method, TtrpcStatusCode.ResourceExhausted, message);
                status = StatusMapping.Create(TtrpcStatusCode.ResourceExhausted, message);
                response = null;
            }

            answer = SerializeResponse(frame.Header.StreamId, status, response);
        }
        finally
        {
            context.Completed();
            linked.Dispose();
            deadline?.Dispose();
        }

        if (!_writer.TryEnqueue(answer))
        {
            ArrayPool<byte>.Shared.Return(answer.Payload);
        }

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
    /// <c>Request.Parser.ParseFrom(frame)</c>, except that the payload is not copied: it stays a view of the frame,
    /// which belongs to this request alone. A stdin write carries up to a MiB.
    /// </summary>
    internal static Request ParseRequest(byte[] frame, int length)
    {
        var request = new Request();
        var input = new CodedInputStream(frame, 0, length);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var lengthDelimited = WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited;
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case Request.ServiceFieldNumber when lengthDelimited:
                    request.Service = input.ReadString();
                    break;
                case Request.MethodFieldNumber when lengthDelimited:
                    request.Method = input.ReadString();
                    break;
                case Request.PayloadFieldNumber when lengthDelimited:
                    // The field is a length varint, then the bytes: skip it, then step over the varint.
                    var data = (int)input.Position;
                    input.SkipLastField();
                    while ((frame[data++] & 0x80) != 0)
                    {
                    }

                    request.Payload = UnsafeByteOperations.UnsafeWrap(frame.AsMemory(data, (int)input.Position - data));
                    break;
                case Request.TimeoutNanoFieldNumber when WireFormat.GetTagWireType(tag) == WireFormat.WireType.Varint:
                    request.TimeoutNano = input.ReadInt64();
                    break;
                case Request.MetadataFieldNumber when lengthDelimited:
                    var pair = new KeyValue();
                    input.ReadMessage(pair);
                    request.Metadata.Add(pair);
                    break;
                default:
                    input.SkipLastField();
                    break;
            }
        }

        return request;
    }

    /// <summary>Bytes of <c>new Response { Status = status, Payload = response.ToByteString() }</c>.</summary>
    internal static int ResponseSize(Status status, IMessage? response, out int statusSize, out int payloadSize)
    {
        statusSize = status.CalculateSize();
        payloadSize = response?.CalculateSize() ?? 0;
        var size = 1 + CodedOutputStream.ComputeLengthSize(statusSize) + statusSize;
        if (payloadSize > 0)
        {
            size += 1 + CodedOutputStream.ComputeLengthSize(payloadSize) + payloadSize;
        }

        return size;
    }

    /// <summary>
    /// The answer frame: <c>new Response { Status = status, Payload = response.ToByteString() }</c> with the
    /// answer serialized once, straight into place after room for the header, in a pooled buffer the writer
    /// returns. Stdio answers carry up to a MiB: in a guest without hardware virtualisation every copy, and every
    /// fresh page touched, counts.
    /// </summary>
    internal static OutgoingFrame SerializeResponse(uint streamId, Status status, IMessage? response)
    {
        var size = ResponseSize(status, response, out var statusSize, out var payloadSize);
        var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + size);
        var output = buffer.AsSpan(FrameHeader.Size, size);
        var at = WriteLengthDelimitedTag(output, Response.StatusFieldNumber, statusSize);
        status.WriteTo(output.Slice(at, statusSize));
        at += statusSize;
        if (payloadSize > 0)
        {
            at += WriteLengthDelimitedTag(output[at..], Response.PayloadFieldNumber, payloadSize);
            response!.WriteTo(output.Slice(at, payloadSize));
        }

        return new OutgoingFrame(streamId, FrameType.Response, 0, buffer, size, Framed: true, Pooled: true);
    }

    private static int WriteLengthDelimitedTag(Span<byte> output, int field, int length)
    {
        output[0] = (byte)WireFormat.MakeTag(field, WireFormat.WireType.LengthDelimited);
        var at = 1;
        var value = (uint)length;
        while (value >= 0x80)
        {
            output[at++] = (byte)(value | 0x80);
            value >>= 7;
        }

        output[at++] = (byte)value;
        return at;
    }

    /// <summary>Who is calling, as gRPC spells a peer: a socket's remote address when it has one.</summary>
    private static string PeerOf(Stream stream)
    {
        try
        {
            return stream is NetworkStream { Socket: var socket }
                ? socket.AddressFamily == AddressFamily.Unix ? "unix:" + socket.RemoteEndPoint : $"{socket.AddressFamily}:{socket.RemoteEndPoint}"
                : "ttrpc:" + stream.GetType().Name;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return "unknown";
        }
    }

    private void Reject(uint streamId, TtrpcStatusCode code, string message)
    {
        Log.FrameRejected(_server.Logger, streamId, code, message);
        var answer = new Response { Status = StatusMapping.Create(code, message) }.ToByteArray();
        _writer.TryEnqueue(new OutgoingFrame(streamId, FrameType.Response, 0, answer));
    }
}
