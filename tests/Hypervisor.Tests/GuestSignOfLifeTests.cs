using System.Text;

namespace ShimV2.Hypervisor.Tests;

/// <summary>The console watch on a file a test writes, as QEMU would.</summary>
public sealed class GuestSignOfLifeTests : IDisposable
{
    private readonly TestDirectory dir = new("life");

    public void Dispose() => dir.Dispose();

    [Fact]
    public async Task The_init_marker_written_after_firmware_noise_is_life()
    {
        var console = dir.File("console.log", "SeaBIOS (version 1.16.2)\r\nBooting from ROM...\r\n");
        var exited = new TaskCompletionSource();

        var watch = GuestSignOfLife.WaitAsync(console, exited.Task, TimeSpan.FromSeconds(30), CancellationToken.None);
        Assert.False(watch.IsCompleted);
        await AppendAsync(console, "csharp-in");
        await AppendAsync(console, "it: starting (uptime 0.41)\n");

        Assert.Equal(GuestLife.Seen, await watch);
    }

    [Fact]
    public async Task A_console_with_only_firmware_lines_is_silent_after_the_limit()
    {
        var console = dir.File("console.log", "Booting from ROM...\r\n");

        Assert.Equal(GuestLife.Silent, await GuestSignOfLife.WaitAsync(console, new TaskCompletionSource().Task, TimeSpan.FromMilliseconds(300), CancellationToken.None));
    }

    [Fact]
    public async Task Qemu_exiting_first_ends_the_watch_at_once()
    {
        var console = dir.Combine("console.log");
        var exited = new TaskCompletionSource();

        var watch = GuestSignOfLife.WaitAsync(console, exited.Task, TimeSpan.FromMinutes(5), CancellationToken.None);
        exited.SetResult();

        Assert.Equal(GuestLife.Exited, await watch.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Cancelling_ends_the_watch_with_cancellation()
    {
        using var cts = new CancellationTokenSource();
        var watch = GuestSignOfLife.WaitAsync(dir.Combine("console.log"), new TaskCompletionSource().Task, TimeSpan.FromMinutes(5), cts.Token);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => watch.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    private static async Task AppendAsync(string path, string text)
    {
        await using var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
        await file.WriteAsync(Encoding.ASCII.GetBytes(text));
    }
}
