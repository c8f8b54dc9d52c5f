using ShimV2.GuestAgent.Service;

namespace ShimV2.GuestAgent.Tests;

public class GuestUptimeTests
{
    [Theory]
    [InlineData("6.03 5.12\n", 6030UL)]
    [InlineData("12345.67 1.00", 12345670UL)]
    [InlineData("0.00 0.00\n", 0UL)]
    [InlineData("", 0UL)]
    [InlineData(null, 0UL)]
    [InlineData("garbage", 0UL)]
    [InlineData("-1.5 0", 0UL)]
    public void Parses_the_first_field_of_proc_uptime_in_milliseconds(string? text, ulong expected) =>
        Assert.Equal(expected, GuestUptime.Milliseconds(text));
}
