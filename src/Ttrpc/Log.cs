using Microsoft.Extensions.Logging;

namespace ShimV2.Ttrpc;

/// <summary>Source-generated log messages of the TTRPC library.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Debug, "ttrpc: connection opened ({Count} open)")]
    public static partial void ConnectionOpened(ILogger logger, int count);

    [LoggerMessage(2, LogLevel.Debug, "ttrpc: connection closed ({Count} open)")]
    public static partial void ConnectionEnded(ILogger logger, int count);

    [LoggerMessage(3, LogLevel.Warning, "ttrpc: connection refused, the server is shutting down")]
    public static partial void ConnectionRefused(ILogger logger);

    [LoggerMessage(4, LogLevel.Warning, "ttrpc: rejected frame on stream {StreamId}: {Code} {Reason}")]
    public static partial void FrameRejected(ILogger logger, uint streamId, TtrpcStatusCode code, string reason);

    [LoggerMessage(5, LogLevel.Warning, "ttrpc: connection read failed, closing it")]
    public static partial void ReadFailed(ILogger logger, Exception exception);

    [LoggerMessage(6, LogLevel.Warning, "ttrpc: connection write failed, closing it")]
    public static partial void WriteFailed(ILogger logger, Exception exception);

    [LoggerMessage(7, LogLevel.Debug, "ttrpc: ignoring frame of type {Type} on stream {StreamId}")]
    public static partial void FrameIgnored(ILogger logger, byte type, uint streamId);

    [LoggerMessage(8, LogLevel.Error, "ttrpc: {Service}/{Method} failed")]
    public static partial void HandlerFailed(ILogger logger, Exception exception, string service, string method);

    [LoggerMessage(9, LogLevel.Debug, "ttrpc: {Service}/{Method} answered {Code}: {Message}")]
    public static partial void HandlerStatus(ILogger logger, string service, string method, TtrpcStatusCode code, string message);

    [LoggerMessage(10, LogLevel.Error, "ttrpc: accept failed, retrying in {Delay}")]
    public static partial void AcceptFailed(ILogger logger, Exception exception, TimeSpan delay);

    [LoggerMessage(11, LogLevel.Error, "ttrpc: a ConnectionClosed handler failed")]
    public static partial void ConnectionClosedHandlerFailed(ILogger logger, Exception exception);

    [LoggerMessage(12, LogLevel.Debug, "ttrpc: client connection closed: {Reason}")]
    public static partial void ClientAborted(ILogger logger, string reason);

    [LoggerMessage(13, LogLevel.Debug, "ttrpc: response on stream {StreamId} has no pending call")]
    public static partial void UnmatchedResponse(ILogger logger, uint streamId);

    [LoggerMessage(14, LogLevel.Information, "ttrpc: shutdown deadline passed, closing {Count} connection(s)")]
    public static partial void ShutdownForced(ILogger logger, int count);
}
