using ShimV2.GuestAgent.Native;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent;

/// <summary>A request the agent refuses or cannot carry out, with the status the shim sees.</summary>
internal sealed class AgentException : Exception
{
    public AgentException(TtrpcStatusCode code, string message, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
    }

    public AgentException()
        : this(TtrpcStatusCode.Unknown, "agent error")
    {
    }

    public AgentException(string message)
        : this(TtrpcStatusCode.Unknown, message)
    {
    }

    public AgentException(string message, Exception inner)
        : this(TtrpcStatusCode.Unknown, message, inner)
    {
    }

    public TtrpcStatusCode Code { get; }

    public static AgentException InvalidArgument(string message) => new(TtrpcStatusCode.InvalidArgument, message);

    public static AgentException NotFound(string message) => new(TtrpcStatusCode.NotFound, message);

    public static AgentException AlreadyExists(string message) => new(TtrpcStatusCode.AlreadyExists, message);

    public static AgentException FailedPrecondition(string message) => new(TtrpcStatusCode.FailedPrecondition, message);

    public static AgentException Unavailable(string message) => new(TtrpcStatusCode.Unavailable, message);

    /// <summary>The agent's error edge for its services (see <see cref="TtrpcServiceBinder"/>).</summary>
    public static Exception ToWire(Exception e, TtrpcCallContext call) => ToTtrpc(e, call.CancellationToken);

    /// <summary>The one mapping of everything a handler can throw to what the shim receives.</summary>
    public static TtrpcException ToTtrpc(Exception e, CancellationToken callToken) => e switch
    {
        TtrpcException t => t,
        AgentException a => new TtrpcException(a.Code, a.Message),
        OperationCanceledException when callToken.IsCancellationRequested =>
            new TtrpcException(TtrpcStatusCode.Cancelled, "call cancelled"),
        OperationCanceledException or TimeoutException => new TtrpcException(TtrpcStatusCode.DeadlineExceeded, e.Message),
        NativeIOException n when n.Errno == Libc.ENOENT => new TtrpcException(TtrpcStatusCode.NotFound, n.Message),
        NativeIOException n when n.Errno is Libc.EPERM or 13 => new TtrpcException(TtrpcStatusCode.PermissionDenied, n.Message),
        FileNotFoundException or DirectoryNotFoundException => new TtrpcException(TtrpcStatusCode.NotFound, e.Message),
        UnauthorizedAccessException => new TtrpcException(TtrpcStatusCode.PermissionDenied, e.Message),
        ArgumentException => new TtrpcException(TtrpcStatusCode.InvalidArgument, e.Message),
        _ => new TtrpcException(TtrpcStatusCode.Internal, e.Message),
    };
}
