
namespace ShimV2.Hypervisor.Tests;

public sealed class GuestPanicTests
{
    /// <summary>What the Debian 6.1 guest prints on `echo c &gt; /proc/sysrq-trigger` (panic=1, the dump trimmed).</summary>
    private const string SysrqCrash = """
        [csharp-init] agent started
        [   41.201337] sysrq: Trigger a crash
        [   41.202011] Kernel panic - not syncing: sysrq triggered crash
        [   41.202764] CPU: 0 PID: 312 Comm: sh Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1
        [   41.203900] Call Trace:
        [   41.204100]  <TASK>
        [   41.204300]  dump_stack_lvl+0x44/0x5c
        [   41.204900]  </TASK>
        [   41.205500] Kernel Offset: disabled
        [   41.206000] Rebooting in 1 seconds..
        """;

    [Fact]
    public void The_panic_line_is_found_behind_its_stack_dump() =>
        Assert.Equal("Kernel panic - not syncing: sysrq triggered crash", GuestPanic.FindInText(SysrqCrash));

    [Fact]
    public void The_closing_line_serves_when_the_opening_one_scrolled_away() =>
        Assert.Equal(
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009",
            GuestPanic.FindInText("[    3.1] ---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009 ]---\r\n"));

    [Fact]
    public void A_console_without_a_panic_has_none() =>
        Assert.Null(GuestPanic.FindInText("[csharp-init] agent started\n[   2.0] random: crng init done\n"));

    [Fact]
    public void The_last_panic_wins_and_a_missing_log_reads_as_none()
    {
        Assert.Equal("Kernel panic - not syncing: second", GuestPanic.FindInText("Kernel panic - not syncing: first\nKernel panic - not syncing: second\n"));
        Assert.Null(GuestPanic.FindInConsole(Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"), "console.log")));
    }
}
