namespace ShimV2.Shim.Stdio;

/// <summary>One guest process's stdio as the agent serves it.</summary>
/// <remarks>
/// Several reads of one stream, and several writes of stdin, may be in flight at once: reads may complete in any
/// order and say where their bytes lie; writes name their offset and the guest applies them in offset order.
/// </remarks>
public interface IGuestStdio
{
    /// <summary>Next piece of stdout; empty at end of stream.</summary>
    Task<GuestOutput> ReadStdoutAsync(CancellationToken cancellationToken);

    /// <summary>Next piece of stderr; empty at end of stream.</summary>
    Task<GuestOutput> ReadStderrAsync(CancellationToken cancellationToken);

    /// <summary>Delivers data whole, as the bytes at <paramref name="offset"/> of the process's stdin.</summary>
    Task WriteStdinAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken cancellationToken);

    Task CloseStdinAsync(CancellationToken cancellationToken);
}

/// <summary>Bytes of an output stream and where they start in it; empty at end of stream, at the stream's length.</summary>
public readonly record struct GuestOutput(ReadOnlyMemory<byte> Data, long Offset);
