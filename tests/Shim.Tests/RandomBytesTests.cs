using ShimV2.Shim.Native;

namespace ShimV2.Shim.Tests;

public sealed class RandomBytesTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(64)]
    [InlineData(4096)]
    public void Gives_as_many_bytes_as_asked(int count) => Assert.Equal(count, Libc.RandomBytes(count).Length);

    [Fact]
    public void Gives_different_bytes_each_time()
    {
        // 2^-512 odds of a false failure.
        Assert.NotEqual(Libc.RandomBytes(64), Libc.RandomBytes(64));
    }
}
