namespace ShimV2.Ttrpc;

public sealed class TtrpcCallOptions
{
    /// <summary>Sent as <c>timeout_nano</c> and enforced locally (DeadlineExceeded); null = none.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Sent as the request's metadata, in order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? Metadata { get; init; }
}
