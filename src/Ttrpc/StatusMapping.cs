using Google.Protobuf;
using Google.Rpc;
using Grpc.Core;
using ShimV2.Ttrpc.Wire;

namespace ShimV2.Ttrpc;

/// <summary>The one place where exceptions become wire statuses and statuses become exceptions.</summary>
internal static class StatusMapping
{
    public const string DeadlineExceededMessage = "context deadline exceeded";
    public const string CancelledMessage = "context canceled";

    /// <summary>The status answered for a handler (or dispatch) failure.</summary>
    public static Google.Rpc.Status FromException(Exception exception, TtrpcCallContext? context)
    {
        var (code, message) = exception switch
        {
            TtrpcException { Code: TtrpcStatusCode.Ok } e => (TtrpcStatusCode.Unknown, e.Message),
            TtrpcException e => (e.Code, e.Message),
            // Generated service bases (and handlers written against Grpc.Core) fail calls this way; gRPC's codes are
            // TTRPC's.
            RpcException { StatusCode: StatusCode.OK } e => (TtrpcStatusCode.Unknown, e.Status.Detail),
            RpcException e => (CodeFromWire((int)e.StatusCode), e.Status.Detail),
            OperationCanceledException when context?.IsDeadlineExceeded == true =>
                (TtrpcStatusCode.DeadlineExceeded, DeadlineExceededMessage),
            OperationCanceledException => (TtrpcStatusCode.Cancelled, CancelledMessage),
            InvalidProtocolBufferException e =>
                (TtrpcStatusCode.InvalidArgument, "ttrpc: error unmarshalling payload: " + e.Message),
            _ => (TtrpcStatusCode.Unknown, exception.Message),
        };
        return Create(code, message);
    }

    public static Google.Rpc.Status Create(TtrpcStatusCode code, string message) => new() { Code = (int)code, Message = message };

    /// <summary>Codes outside the known range read as Unknown.</summary>
    public static TtrpcStatusCode CodeFromWire(int code) =>
        code is >= (int)TtrpcStatusCode.Ok and <= (int)TtrpcStatusCode.Unauthenticated
            ? (TtrpcStatusCode)code
            : TtrpcStatusCode.Unknown;

    /// <summary>The client-side exception for a non-OK status.</summary>
    public static TtrpcException ToException(Google.Rpc.Status status) => new(CodeFromWire(status.Code), status.Message);

    /// <summary>A connection that is gone: every call on it fails with Unavailable and the first reason.</summary>
    public static TtrpcException Unavailable(Exception reason) =>
        new(TtrpcStatusCode.Unavailable, reason.Message, reason);

    /// <summary>A response frame's payload: status first (absent = OK), then the response message's bytes.</summary>
    public static ByteString ParseResponse(uint streamId, byte[] frame)
    {
        Response response;
        try
        {
            response = Response.Parser.ParseFrom(frame);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw Malformed(streamId, e);
        }

        if (response.Status is { Code: not 0 } status)
        {
            throw ToException(status);
        }

        return response.Payload;
    }

    /// <summary>The response message in an answer's payload.</summary>
    public static TResponse ParseMessage<TResponse>(uint streamId, ByteString payload)
        where TResponse : IMessage<TResponse>, new()
    {
        try
        {
            var message = new TResponse();
            message.MergeFrom(payload);
            return message;
        }
        catch (InvalidProtocolBufferException e)
        {
            throw Malformed(streamId, e);
        }
    }

    public static TtrpcException Malformed(uint streamId, Exception e) =>
        new(TtrpcStatusCode.Internal, $"ttrpc: malformed response on stream {streamId}: {e.Message}", e);

    public static string OversizedMessage(long length, int max) =>
        $"message length {length} exceed maximum message size of {max}";
}
