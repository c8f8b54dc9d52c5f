using System.Text;
using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.Stdio;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

public class StdioTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Output_is_read_in_order_and_end_of_stream_waits_for_the_exit()
    {
        var (r, w) = Libc.Pipe();
        using var stream = new OutputStream(new SafeFd(r), "test");
        stream.Start();
        Libc.WriteAll(w, "hello "u8);
        Libc.WriteAll(w, "world"u8);
        Libc.close(w);

        var text = Encoding.UTF8.GetString(await stream.ReadAsync(3, CancellationToken.None).Bytes().WaitAsync(Timeout));
        Assert.Equal("hel", text);
        while (text.Length < "hello world".Length)
        {
            text += Encoding.UTF8.GetString(await stream.ReadAsync(100, CancellationToken.None).Bytes().WaitAsync(Timeout));
        }

        Assert.Equal("hello world", text);

        // The pipe is at EOF but the process has not been reported exited: readers wait.
        var pending = stream.ReadAsync(100, CancellationToken.None).Bytes();
        Assert.False(pending.IsCompleted);
        stream.ProcessExited();
        Assert.Empty(await pending.WaitAsync(Timeout));
        Assert.Empty(await stream.ReadAsync(100, CancellationToken.None).Bytes());
        await stream.Drained.WaitAsync(Timeout);
    }

    [Fact]
    public async Task Output_nobody_read_before_the_exit_is_drained_into_the_buffer_and_then_read_whole()
    {
        var (r, w) = Libc.Pipe();
        using var stream = new OutputStream(new SafeFd(r), "test");
        stream.Start();
        var data = Enumerable.Range(0, 40_000).Select(i => (byte)(i * 13)).ToArray();
        for (var i = 0; i < data.Length; i += 1000)
        {
            Libc.WriteAll(w, data.AsSpan(i, 1000));
        }

        Libc.close(w);
        stream.ProcessExited();
        await stream.Drained.WaitAsync(Timeout);

        var received = new MemoryStream();
        while (true)
        {
            var chunk = await stream.ReadAsync(1 << 20, CancellationToken.None).Bytes().WaitAsync(Timeout);
            if (chunk.Length == 0)
            {
                break;
            }

            received.Write(chunk);
        }

        Assert.Equal(data, received.ToArray());
    }

    [Fact]
    public async Task A_full_buffer_stops_reading_until_the_reader_catches_up()
    {
        var (r, w) = Libc.Pipe();
        using var stream = new OutputStream(new SafeFd(r), "test", capacity: 1024);
        stream.Start();
        var data = Enumerable.Range(0, 512 * 1024).Select(i => (byte)(i * 7)).ToArray();
        var writer = Task.Run(() =>
        {
            Libc.WriteAll(w, data);
            Libc.close(w);
        });

        var received = new MemoryStream();
        while (received.Length < data.Length)
        {
            var chunk = await stream.ReadAsync(4096, CancellationToken.None).Bytes().WaitAsync(Timeout);
            Assert.NotEmpty(chunk);
            Assert.InRange(stream.Buffered, 0, 1024 + (64 * 1024)); // at most one pump read past the capacity
            received.Write(chunk);
        }

        await writer.WaitAsync(Timeout);
        stream.ProcessExited();
        Assert.Empty(await stream.ReadAsync(10, CancellationToken.None).Bytes().WaitAsync(Timeout));
        Assert.Equal(data, received.ToArray());
    }

    [Fact]
    public async Task After_the_exit_a_pipe_held_by_a_descendant_is_given_up_after_the_grace_period()
    {
        var (r, w) = Libc.Pipe();
        try
        {
            using var stream = new OutputStream(new SafeFd(r), "test", exitGrace: TimeSpan.FromMilliseconds(50));
            stream.Start();
            Libc.WriteAll(w, "x"u8);
            stream.ProcessExited();
            Assert.Equal("x", Encoding.UTF8.GetString(await stream.ReadAsync(10, CancellationToken.None).Bytes().WaitAsync(Timeout)));
            Assert.Empty(await stream.ReadAsync(10, CancellationToken.None).Bytes().WaitAsync(Timeout));
        }
        finally
        {
            Libc.close(w);
        }
    }

    [Fact]
    public async Task A_cancelled_read_throws_and_leaves_the_data()
    {
        var (r, w) = Libc.Pipe();
        using var stream = new OutputStream(new SafeFd(r), "test");
        stream.Start();
        using var cts = new CancellationTokenSource();
        var read = stream.ReadAsync(10, cts.Token).Bytes();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read);
        Libc.WriteAll(w, "kept"u8);
        Assert.Equal("kept", Encoding.UTF8.GetString(await stream.ReadAsync(10, CancellationToken.None).Bytes().WaitAsync(Timeout)));
        Libc.close(w);
    }

    [Fact]
    public async Task Stdin_close_waits_for_every_pending_write_to_be_delivered()
    {
        var (r, w) = Libc.Pipe();
        var stdin = new StdinWriter(new SafeFd(w), closeOnClose: true);
        var data = new byte[256 * 1024]; // more than a pipe holds: the write blocks until the reader drains it
        Array.Fill(data, (byte)'a');
        var write = stdin.WriteAsync(data, 0, CancellationToken.None);
        var close = stdin.CloseAsync();
        Assert.False(close.IsCompleted);

        using var reader = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(r, ownsHandle: true), FileAccess.Read);
        var all = new MemoryStream();
        await reader.CopyToAsync(all).WaitAsync(Timeout); // ends at EOF: after the close
        Assert.Equal(data.Length, await write);
        await close.WaitAsync(Timeout);
        Assert.Equal(data.Length, all.Length);

        var e = await Assert.ThrowsAsync<AgentException>(() => stdin.WriteAsync("late"u8.ToArray(), data.Length, CancellationToken.None));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, e.Code);
        await stdin.CloseAsync(); // twice is fine
    }

    [Fact]
    public async Task Stdin_writes_that_arrive_out_of_order_reach_the_process_in_offset_order()
    {
        var (r, w) = Libc.Pipe();
        using var stdin = new StdinWriter(new SafeFd(w), closeOnClose: true);
        var third = stdin.WriteAsync("three"u8.ToArray(), 6, CancellationToken.None);
        var second = stdin.WriteAsync("two "u8.ToArray(), 2, CancellationToken.None);
        Assert.False(third.IsCompleted);
        Assert.False(second.IsCompleted);
        Assert.Equal(2, await stdin.WriteAsync("1 "u8.ToArray(), 0, CancellationToken.None));
        await Task.WhenAll(second, third).WaitAsync(Timeout);
        await stdin.CloseAsync();

        using var reader = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(r, ownsHandle: true), FileAccess.Read);
        Assert.Equal("1 two three", await new StreamReader(reader).ReadToEndAsync().WaitAsync(Timeout));
    }

    [Fact]
    public async Task After_a_failed_stdin_write_the_writes_waiting_behind_it_fail_too()
    {
        var (r, w) = Libc.Pipe();
        Libc.close(r);
        using var stdin = new StdinWriter(new SafeFd(w), closeOnClose: true);
        var later = stdin.WriteAsync("later"u8.ToArray(), 1, CancellationToken.None);
        var first = await Assert.ThrowsAsync<AgentException>(() => stdin.WriteAsync("x"u8.ToArray(), 0, CancellationToken.None));
        var second = await Assert.ThrowsAsync<AgentException>(() => later.WaitAsync(Timeout));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, second.Code);
        Assert.Equal(first.Message, second.Message);
        var again = await Assert.ThrowsAsync<AgentException>(() => stdin.WriteAsync("x"u8.ToArray(), 0, CancellationToken.None));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, again.Code);
    }

    [Fact]
    public async Task Writing_to_a_process_that_closed_its_stdin_is_a_failed_precondition()
    {
        var (r, w) = Libc.Pipe();
        Libc.close(r);
        using var stdin = new StdinWriter(new SafeFd(w), closeOnClose: true);
        var e = await Assert.ThrowsAsync<AgentException>(() => stdin.WriteAsync("x"u8.ToArray(), 0, CancellationToken.None));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, e.Code);
        Assert.Contains("broken pipe", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Streams_the_host_does_not_use_are_dev_null()
    {
        using var stdio = ProcessStdio.Create(terminal: false, stdin: false, stdout: true, stderr: false, consoleSize: null);
        Assert.Null(stdio.Stdin);
        Assert.NotNull(stdio.Stdout);
        Assert.Null(stdio.Stderr);
        var (i, o, e) = stdio.ChildFds;
        Assert.Equal("/dev/null", Target(i));
        Assert.StartsWith("pipe:", Target(o), StringComparison.Ordinal);
        Assert.Equal("/dev/null", Target(e));
        var resize = Assert.Throws<AgentException>(() => stdio.Resize(10, 10));
        Assert.Equal(TtrpcStatusCode.FailedPrecondition, resize.Code);
    }

    [Fact]
    public async Task A_terminal_is_one_pty_for_all_three_streams_with_output_on_stdout()
    {
        using var stdio = ProcessStdio.Create(terminal: true, stdin: true, stdout: true, stderr: true, consoleSize: new Oci.OciBox { Height = 24, Width = 80 });
        Assert.StartsWith("/dev/pts/", stdio.ConsolePath, StringComparison.Ordinal);
        var (i, o, e) = stdio.ChildFds;
        Assert.Equal(i, o);
        Assert.Equal(i, e);
        Assert.Equal(stdio.ConsolePath, Target(i));
        Assert.Null(stdio.Stderr);
        Assert.NotNull(stdio.Stdin);
        stdio.Resize(40, 120);

        // What the process writes on the slave comes out of stdout.
        stdio.StartPumps();
        Libc.WriteAll(o, "tty-out"u8);
        var text = "";
        while (!text.Contains("tty-out", StringComparison.Ordinal))
        {
            text += Encoding.UTF8.GetString(await stdio.Stdout!.ReadAsync(100, CancellationToken.None).Bytes().WaitAsync(Timeout));
        }
    }

    [Fact]
    public void A_terminal_from_another_ptmx_has_its_slave_opened_without_a_path()
    {
        using var stdio = ProcessStdio.Create(terminal: true, stdin: false, stdout: true, stderr: false, consoleSize: null, ptmx: "/dev/pts/ptmx");
        Assert.Null(stdio.ConsolePath);
        Assert.StartsWith("/dev/pts/", Target(stdio.ChildFds.Stdin), StringComparison.Ordinal);
        Assert.Null(stdio.Stdin);
    }

    private static string Target(int fd) => new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "";
}

internal static class OutputChunkExtensions
{
    /// <summary>The chunk's bytes; its pooled array goes back at once.</summary>
    public static async Task<byte[]> Bytes(this Task<OutputChunk> read)
    {
        var chunk = await read;
        var bytes = chunk.Memory.ToArray();
        chunk.Return();
        return bytes;
    }
}
