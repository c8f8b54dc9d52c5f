namespace ShimV2.Ttrpc;

public sealed class TtrpcServerOptions
{
    /// <summary>Largest frame payload accepted and sent; larger ones are answered with ResourceExhausted.</summary>
    public int MaxMessageSize { get; init; } = 4 << 20;
}
