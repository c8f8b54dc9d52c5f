using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Tests;

public class ExitStatusTests
{
    [Theory]
    [InlineData(0, 0u)]
    [InlineData(3 << 8, 3u)]
    [InlineData(255 << 8, 255u)]
    [InlineData(9, 137u)]
    [InlineData(15, 143u)]
    [InlineData(9 | 0x80, 137u)] // killed by SIGKILL, core dumped flag set
    [InlineData(6 | 0x80, 134u)] // SIGABRT with core
    public void Exit_status_follows_runc_convention(int raw, uint expected)
    {
        var exit = new ProcessExit(42, raw, DateTimeOffset.UnixEpoch);
        Assert.Equal(expected, exit.ExitStatus);
    }

    [Fact]
    public void Signal_and_code_are_decoded_from_the_wait_status()
    {
        Assert.Equal(9, new ProcessExit(1, 9, DateTimeOffset.UnixEpoch).Signal);
        Assert.Equal(0, new ProcessExit(1, 9, DateTimeOffset.UnixEpoch).Code);
        Assert.Equal(0, new ProcessExit(1, 7 << 8, DateTimeOffset.UnixEpoch).Signal);
        Assert.Equal(7, new ProcessExit(1, 7 << 8, DateTimeOffset.UnixEpoch).Code);
    }
}
