namespace ShimV2.Shim.Stdio;

/// <summary>One guest process's stdio as the agent serves it.</summary>
public interface IGuestStdio
{
    /// <summary>Next chunk of stdout; empty at end of stream.</summary>
    Task<ReadOnlyMemory<byte>> ReadStdoutAsync(CancellationToken cancellationToken);

    /// <summary>Next chunk of stderr; empty at end of stream.</summary>
    Task<ReadOnlyMemory<byte>> ReadStderrAsync(CancellationToken cancellationToken);

    Task WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    Task CloseStdinAsync(CancellationToken cancellationToken);
}
