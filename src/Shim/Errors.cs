using ShimV2.Ttrpc;

namespace ShimV2.Shim;

/// <summary>What went wrong, in the task API's terms; mapped to a wire code once, at the service edge.</summary>
public enum ErrorKind
{
    Unknown,
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    Unavailable,
    DeadlineExceeded,
    Unimplemented,
    Internal,
}

/// <summary>A domain error of the shim: a kind and a message for the user (no wire type in domain code).</summary>
public sealed class ShimException(ErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public ErrorKind Kind { get; } = kind;
}

/// <summary>The errors the task API returns, by kind.</summary>
internal static class Errors
{
    public static ShimException NotFound(string what) => new(ErrorKind.NotFound, what);

    public static ShimException TaskNotFound(string id) => new(ErrorKind.NotFound, $"task {id} not found");

    public static ShimException ExecNotFound(string id, string execId) => new(ErrorKind.NotFound, $"exec {execId} of task {id} not found");

    public static ShimException AlreadyExists(string what) => new(ErrorKind.AlreadyExists, what);

    public static ShimException InvalidArgument(string what) => new(ErrorKind.InvalidArgument, what);

    public static ShimException FailedPrecondition(string what) => new(ErrorKind.FailedPrecondition, what);

    public static ShimException Unimplemented(string what) => new(ErrorKind.Unimplemented, what);

    public static ShimException Unavailable(string what) => new(ErrorKind.Unavailable, what);

    /// <summary>
    /// An agent call failed: the error keeps the agent's kind and says what was being done
    /// ("exec e1 in container c: guest agent: ...").
    /// </summary>
    public static ShimException Agent(string doing, TtrpcException e) =>
        new(KindOf(e.Code), e.Message.StartsWith("guest agent", StringComparison.Ordinal) ? $"{doing}: {e.Message}" : $"{doing}: guest agent: {e.Message}", e);

    public static ErrorKind KindOf(TtrpcStatusCode code) => code switch
    {
        TtrpcStatusCode.NotFound => ErrorKind.NotFound,
        TtrpcStatusCode.AlreadyExists => ErrorKind.AlreadyExists,
        TtrpcStatusCode.InvalidArgument => ErrorKind.InvalidArgument,
        TtrpcStatusCode.FailedPrecondition => ErrorKind.FailedPrecondition,
        TtrpcStatusCode.Unavailable => ErrorKind.Unavailable,
        TtrpcStatusCode.DeadlineExceeded => ErrorKind.DeadlineExceeded,
        TtrpcStatusCode.Unimplemented => ErrorKind.Unimplemented,
        TtrpcStatusCode.Internal => ErrorKind.Internal,
        _ => ErrorKind.Unknown,
    };

    public static TtrpcStatusCode CodeOf(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => TtrpcStatusCode.NotFound,
        ErrorKind.AlreadyExists => TtrpcStatusCode.AlreadyExists,
        ErrorKind.InvalidArgument => TtrpcStatusCode.InvalidArgument,
        ErrorKind.FailedPrecondition => TtrpcStatusCode.FailedPrecondition,
        ErrorKind.Unavailable => TtrpcStatusCode.Unavailable,
        ErrorKind.DeadlineExceeded => TtrpcStatusCode.DeadlineExceeded,
        ErrorKind.Unimplemented => TtrpcStatusCode.Unimplemented,
        ErrorKind.Internal => TtrpcStatusCode.Internal,
        _ => TtrpcStatusCode.Unknown,
    };
}
