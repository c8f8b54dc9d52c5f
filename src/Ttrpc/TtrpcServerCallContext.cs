using Grpc.Core;

namespace ShimV2.Ttrpc;

/// <summary>
/// A TTRPC call as generated service bases see it. TTRPC answers carry no headers or trailers and a handler's
/// failure is its exception (mapped by the server), so those parts are inert here.
/// </summary>
public sealed class TtrpcServerCallContext : ServerCallContext
{
    private Metadata? _requestHeaders;

    public TtrpcServerCallContext(TtrpcCallContext call)
    {
        ArgumentNullException.ThrowIfNull(call);
        Call = call;
    }

    /// <summary>The TTRPC call: its raw metadata, and <see cref="TtrpcCallContext.OnCompleted"/> for pooled answers.</summary>
    public TtrpcCallContext Call { get; }

    protected override string MethodCore => $"/{Call.Service}/{Call.Method}";

    protected override string HostCore => "";

    protected override string PeerCore => Call.Peer;

    // gRPC's "no deadline" is DateTime.MaxValue.
    protected override DateTime DeadlineCore => Call.Deadline?.UtcDateTime ?? DateTime.MaxValue;

    protected override Metadata RequestHeadersCore => _requestHeaders ??= HeadersOf(Call.Metadata);

    protected override CancellationToken CancellationTokenCore => Call.CancellationToken;

    protected override Metadata ResponseTrailersCore { get; } = [];

    protected override Status StatusCore { get; set; }

    protected override WriteOptions? WriteOptionsCore { get; set; }

    protected override AuthContext AuthContextCore { get; } = new(null, []);

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException("ttrpc: calls do not propagate to child calls");

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) =>
        throw new NotSupportedException("ttrpc: answers carry no headers");

    /// <summary>
    /// The request's metadata as gRPC headers. gRPC refuses some keys TTRPC allows (upper case is folded, other
    /// characters throw): those are left out here and stay readable in <see cref="TtrpcCallContext.Metadata"/>.
    /// </summary>
    private static Metadata HeadersOf(IReadOnlyList<KeyValuePair<string, string>> metadata)
    {
        var headers = new Metadata();
        foreach (var (key, value) in metadata)
        {
            try
            {
                if (!key.EndsWith(Metadata.BinaryHeaderSuffix, StringComparison.OrdinalIgnoreCase))
                {
                    headers.Add(key, value);
                }
            }
            catch (ArgumentException)
            {
                // Not a valid gRPC header name.
            }
        }

        return headers;
    }
}

/// <summary>Reaches the TTRPC call under a generated service's <see cref="ServerCallContext"/>.</summary>
public static class ServerCallContextExtensions
{
    /// <exception cref="InvalidOperationException">The call was not served over TTRPC.</exception>
    public static TtrpcCallContext Ttrpc(this ServerCallContext context) =>
        (context as TtrpcServerCallContext)?.Call
        ?? throw new InvalidOperationException("ttrpc: the call was not served over TTRPC");
}
