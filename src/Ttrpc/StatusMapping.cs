using Google.Protobuf;
using Google.Rpc;

namespace ShimV2.Ttrpc;

/// <summary>The one place where exceptions become wire statuses and statuses become exceptions.</summary>
internal static class StatusMapping
{
    public const string DeadlineExceededMessage = "context deadline exceeded";
    public const string CancelledMessage = "context canceled";

    /// <summary>The status answered for a handler (or dispatch) failure.</summary>
    public static Status FromException(Exception exception, TtrpcCallContext? context)
    {
        var (code, message) = exception switch
        {
            TtrpcException { Code: TtrpcStatusCode.Ok } e => (TtrpcStatusCode.Unknown, e.Message),
            TtrpcException e => (e.Code, e.Message),
            OperationCanceledException when context?.IsDeadlineExceeded == true =>
                (TtrpcStatusCode.DeadlineExceeded, DeadlineExceededMessage),
            OperationCanceledException => (TtrpcStatusCode.Cancelled, CancelledMessage),
            InvalidProtocolBufferException e =>
                (TtrpcStatusCode.InvalidArgument, "ttrpc: error unmarshalling payload: " + e.Message),
            _ => (TtrpcStatusCode.Unknown, exception.Message),
        };
        return Create(code, message);
    }

    public static Status Create(TtrpcStatusCode code, string message) => new() { Code = (int)code, Message = message };

    /// <summary>Codes outside the known range read as Unknown.</summary>
    public static TtrpcStatusCode CodeFromWire(int code) =>
        code is >= (int)TtrpcStatusCode.Ok and <= (int)TtrpcStatusCode.Unauthenticated
            ? (TtrpcStatusCode)code
            : TtrpcStatusCode.Unknown;

    /// <summary>The client-side exception for a non-OK status.</summary>
    public static TtrpcException ToException(Status status) => new(CodeFromWire(status.Code), status.Message);

    /// <summary>A connection that is gone: every call on it fails with Unavailable and the first reason.</summary>
    public static TtrpcException Unavailable(Exception reason) =>
        new(TtrpcStatusCode.Unavailable, reason.Message, reason);

    /// <summary>A response frame's payload: status first (absent = OK), then the response message.</summary>
    public static TResponse ParseResponse<TResponse>(uint streamId, byte[] frame)
        where TResponse : IMessage<TResponse>, new()
    {
        try
        {
            var response = ShimV2.Ttrpc.Wire.Response.Parser.ParseFrom(frame);
            if (response.Status is { Code: not 0 } status)
            {
                throw ToException(status);
            }

            var message = new TResponse();
            message.MergeFrom(response.Payload);
            return message;
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new TtrpcException(TtrpcStatusCode.Internal, $"ttrpc: malformed response on stream {streamId}: {e.Message}", e);
        }
    }

    public static string OversizedMessage(long length, int max) =>
        $"message length {length} exceed maximum message size of {max}";
}
