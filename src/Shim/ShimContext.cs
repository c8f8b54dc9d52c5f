namespace ShimV2.Shim;

/// <summary>What containerd told this shim process about itself (flags and environment).</summary>
public sealed record ShimContext
{
    public required string Namespace { get; init; }

    /// <summary>containerd's gRPC socket path (the -address flag).</summary>
    public required string ContainerdAddress { get; init; }

    /// <summary>containerd's TTRPC socket for events (TTRPC_ADDRESS), without a unix:// prefix.</summary>
    public required string TtrpcAddress { get; init; }

    public required string Id { get; init; }

    public string PublishBinary { get; init; } = "containerd";

    public bool Debug { get; init; }

    /// <summary>Config used when neither start's stdin nor Create's options name one.</summary>
    public string? DefaultConfigPath { get; init; }
}
