using System.Security.Cryptography;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>A write-only sink that counts and SHA-256-hashes what a command prints (100 MiB need not be kept).</summary>
public sealed class HashingStream : Stream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public long Count { get; private set; }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => Count;

    public override long Position { get => Count; set => throw new NotSupportedException(); }

    public string HexDigest() => Convert.ToHexStringLower(_hash.GetCurrentHash());

    public override void Write(byte[] buffer, int offset, int count)
    {
        _hash.AppendData(buffer, offset, count);
        Count += count;
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _hash.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>Deterministic pseudo-random test data, written in 1 MiB chunks and hashed on the way.</summary>
public static class TestData
{
    public static Func<Stream, Task> Random(long bytes, int seed, HashingStream hash) => async stdin =>
    {
        var rng = new System.Random(seed);
        var chunk = new byte[1024 * 1024];
        for (long left = bytes; left > 0;)
        {
            var n = (int)Math.Min(chunk.Length, left);
            rng.NextBytes(chunk.AsSpan(0, n));
            hash.Write(chunk, 0, n);
            await stdin.WriteAsync(chunk.AsMemory(0, n));
            left -= n;
        }
    };
}
