namespace ShimV2.Ttrpc;

/// <summary>
/// A TTRPC call failed with a status. Thrown by handlers to answer with <see cref="Code"/> and the message,
/// and by <see cref="TtrpcClient"/> when the peer answered with a non-OK status or the connection was lost.
/// </summary>
public class TtrpcException : Exception
{
    public TtrpcException(TtrpcStatusCode code, string message)
        : this(code, message, null)
    {
    }

    public TtrpcException(TtrpcStatusCode code, string message, Exception? inner)
        : base(message, inner)
    {
        Code = code;
    }

    public TtrpcStatusCode Code { get; }
}
