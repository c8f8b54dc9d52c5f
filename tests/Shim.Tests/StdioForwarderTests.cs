using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Shim.Stdio;

namespace ShimV2.Shim.Tests;

/// <summary>
/// The stdin side of <see cref="StdioForwarder"/> between a real FIFO (the client's end opened as `ctr` opens it)
/// and a recording guest.
/// </summary>
public sealed class StdioForwarderTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string _dir = Directory.CreateTempSubdirectory("shim-stdio-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task CloseIO_answers_while_the_client_still_holds_the_fifo_and_stdin_closes_at_its_end()
    {
        var guest = new RecordingGuest();
        var stdin = Fifo("stdin");
        await using var io = Forwarder(stdin, guest, TimeSpan.FromMinutes(10));
        io.Start();
        var client = OpenWriter(stdin);
        await client.WriteAsync("abc"u8.ToArray());
        await client.FlushAsync();

        // As `ctr` does: CloseIO first, and only once it answered, close the FIFO.
        await io.CloseStdinAsync(CancellationToken.None).WaitAsync(Timeout);
        Assert.False(guest.Closed.Task.IsCompleted);
        await client.DisposeAsync();

        Assert.Equal("abc"u8.ToArray(), await guest.Closed.Task.WaitAsync(Timeout));
    }

    [Fact]
    public async Task A_client_that_keeps_the_fifo_open_gets_what_it_wrote_delivered_then_stdin_closed_after_the_grace()
    {
        var guest = new RecordingGuest();
        var stdin = Fifo("stdin");
        await using var io = Forwarder(stdin, guest, TimeSpan.FromMilliseconds(200));
        io.Start();
        await using var client = OpenWriter(stdin);
        var sent = Pattern(48 * 1024);
        await client.WriteAsync(sent);
        await client.FlushAsync();

        await io.CloseStdinAsync(CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(sent, await guest.Closed.Task.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Bytes_still_in_the_fifo_when_the_grace_ends_are_delivered_before_the_close()
    {
        // The guest takes nothing until released, so most of what is written waits in the FIFO past the grace.
        var guest = new RecordingGuest { Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var log = new CapturingLogger();
        var stdin = Fifo("stdin");
        await using var io = Forwarder(stdin, guest, TimeSpan.FromMilliseconds(100), log);
        io.Start();
        await using var client = OpenWriter(stdin);
        var sent = Pattern(60 * 1024);
        await client.WriteAsync(sent.AsMemory(0, 4096));
        await client.FlushAsync();
        await guest.WriteStarted.Task.WaitAsync(Timeout);
        await client.WriteAsync(sent.AsMemory(4096));
        await client.FlushAsync();

        await io.CloseStdinAsync(CancellationToken.None).WaitAsync(Timeout);
        await log.WaitForAsync("still open", Timeout);
        guest.Gate.SetResult();

        Assert.Equal(sent, await guest.Closed.Task.WaitAsync(Timeout));
    }

    [Fact]
    public async Task CloseIO_of_a_process_without_stdin_closes_its_stdin_at_once()
    {
        var guest = new RecordingGuest();
        await using var io = new StdioForwarder(new StdioConfig("", "", "", false), guest, NullLogger.Instance, "t");
        io.Start();

        await io.CloseStdinAsync(CancellationToken.None).WaitAsync(Timeout);

        Assert.True(guest.Closed.Task.IsCompleted);
    }

    [Fact]
    public async Task Megabytes_of_stdin_arrive_whole_and_in_order()
    {
        var guest = new RecordingGuest();
        var stdin = Fifo("stdin");
        await using var io = Forwarder(stdin, guest, TimeSpan.FromMinutes(10));
        io.Start();
        var sent = Pattern(8 << 20);
        await using (var client = OpenWriter(stdin))
        {
            // Odd sizes, so chunk edges fall anywhere.
            for (var i = 0; i < sent.Length; i += 77_777)
            {
                await client.WriteAsync(sent.AsMemory(i, Math.Min(77_777, sent.Length - i)));
                await client.FlushAsync();
            }
        }

        Assert.Equal(sent, await guest.Closed.Task.WaitAsync(Timeout));
    }

    [Fact]
    public async Task A_process_that_does_not_read_its_stdin_blocks_the_client_instead_of_filling_the_shim()
    {
        var guest = new RecordingGuest { Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var stdin = Fifo("stdin");
        await using var io = Forwarder(stdin, guest, TimeSpan.FromMinutes(10));
        io.Start();
        var fd = open(stdin, O_WRONLY | O_NONBLOCK);
        Assert.True(fd >= 0, $"open {stdin}: errno {Marshal.GetLastPInvokeError()}");
        var sent = new List<byte>();
        try
        {
            // Write until the FIFO stays full: the shim has stopped taking more.
            var piece = Pattern(64 * 1024);
            var limit = 64 << 20;
            while (sent.Count < limit)
            {
                var n = write(fd, piece, piece.Length);
                if (n > 0)
                {
                    sent.AddRange(piece.AsSpan(0, (int)n));
                    continue;
                }

                Assert.Equal(EAGAIN, Marshal.GetLastPInvokeError());
                var pfd = new PollFd { Fd = fd, Events = POLLOUT };
                if (poll(ref pfd, 1, 500) == 0)
                {
                    break;
                }
            }

            // The FIFO (1 MiB) and the chunks in flight (up to 1 MiB each), with room for a page's rounding.
            Assert.InRange(sent.Count, 1 << 20, (1 + StdioForwarder.Window) << 20);
            guest.Gate.SetResult();
        }
        finally
        {
            _ = close(fd);
        }

        Assert.Equal(sent.ToArray(), await guest.Closed.Task.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Stdout_reaches_the_fifo_whole_and_in_order_before_the_output_counts_as_drained()
    {
        var chunks = Enumerable.Range(1, 100).Select(i => Pattern(i * 997)).ToList();
        var guest = new RecordingGuest();
        guest.Output.AddRange(chunks);
        var stdout = Fifo("stdout");
        await using var io = new StdioForwarder(new StdioConfig("", stdout, "", false), guest, NullLogger.Instance, "t");
        io.Start();

        await using var client = new FileStream(stdout, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        var expected = chunks.SelectMany(c => c).ToArray();
        var received = new byte[expected.Length];
        await client.ReadExactlyAsync(received).AsTask().WaitAsync(Timeout);

        Assert.Equal(expected, received);
        await io.OutputDrained.WaitAsync(Timeout);
    }

    [Fact]
    public async Task Stdout_answered_out_of_order_reaches_the_fifo_in_stream_order()
    {
        var chunks = Enumerable.Range(1, 50).Select(i => Pattern(i * 1013)).ToList();
        var guest = new ShufflingGuest(chunks);
        var stdout = Fifo("stdout");
        await using var io = new StdioForwarder(new StdioConfig("", stdout, "", false), guest, NullLogger.Instance, "t");
        io.Start();

        await using var client = new FileStream(stdout, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        var expected = chunks.SelectMany(c => c).ToArray();
        var received = new byte[expected.Length];
        await client.ReadExactlyAsync(received).AsTask().WaitAsync(Timeout);

        Assert.Equal(expected, received);
        await io.OutputDrained.WaitAsync(Timeout);
        Assert.Equal(StdioForwarder.Window, guest.MostInFlight);
    }

    [Fact]
    public async Task A_client_that_does_not_read_stdout_stops_the_copy_instead_of_filling_the_shim()
    {
        var guest = new RecordingGuest { EndlessOutput = Pattern(64 * 1024) };
        var stdout = Fifo("stdout");
        var io = new StdioForwarder(new StdioConfig("", stdout, "", false), guest, NullLogger.Instance, "t");
        io.Start();
        await using var client = new FileStream(stdout, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        try
        {
            // The shim stops asking the guest for more once the FIFO is full: wait until the reads stay put.
            var deadline = DateTime.UtcNow + Timeout;
            var reads = -1;
            while (reads != guest.OutputReads)
            {
                Assert.True(DateTime.UtcNow < deadline, "the shim never stopped reading output");
                reads = guest.OutputReads;
                await Task.Delay(500);
            }

            // The FIFO (1 MiB), the chunk being written and the window's reads ahead.
            Assert.InRange(reads * 64 * 1024, 1 << 20, (1 << 20) + ((StdioForwarder.Window + 2) * 64 * 1024));
        }
        finally
        {
            // A write blocked on the full FIFO ends only when someone reads it: the client, here, until the end.
            var drain = client.CopyToAsync(Stream.Null);
            await io.DisposeAsync();
            await drain.WaitAsync(Timeout);
        }
    }

    private static byte[] Pattern(int length) => Enumerable.Range(0, length).Select(i => (byte)((i * 31) + (i >> 8))).ToArray();

    private static StdioForwarder Forwarder(string stdin, RecordingGuest guest, TimeSpan grace, ILogger? logger = null) =>
        new(new StdioConfig(stdin, "", "", false), guest, logger ?? NullLogger.Instance, "t", grace);

    private static FileStream OpenWriter(string fifo) => new(fifo, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.None);

    private string Fifo(string name)
    {
        var path = Path.Combine(_dir, name);
        Assert.True(mkfifo(path, 0x180) == 0, $"mkfifo {path}: errno {Marshal.GetLastPInvokeError()}");
        return path;
    }

    private const int O_WRONLY = 1;
    private const int O_NONBLOCK = 0x800;
    private const int EAGAIN = 11;
    private const short POLLOUT = 4;

#pragma warning disable SYSLIB1054, CA2101 // test helpers: plain DllImports are enough
    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);

    [DllImport("libc", SetLastError = true)]
    private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern nint write(int fd, byte[] buffer, nint count);

    [DllImport("libc", SetLastError = true)]
    private static extern int poll(ref PollFd fds, nuint count, int timeout);

    [DllImport("libc", SetLastError = true)]
    private static extern int close(int fd);
#pragma warning restore SYSLIB1054, CA2101

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>
    /// A guest process's stdio: records the stdin it is given by offset (writes in flight may run in any order) and
    /// when it is closed; answers stdout reads in order.
    /// </summary>
    private sealed class RecordingGuest : IGuestStdio
    {
        private readonly SortedDictionary<long, byte[]> _received = [];
        private int _outputReads;

        /// <summary>When set, writes wait for it.</summary>
        public TaskCompletionSource? Gate { get; init; }

        public TaskCompletionSource WriteStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes with everything received, at the close.</summary>
        public TaskCompletionSource<byte[]> Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>What stdout reads return, in order, then end of stream.</summary>
        public List<byte[]> Output { get; } = [];

        /// <summary>When set, stdout never ends: every read returns this.</summary>
        public byte[]? EndlessOutput { get; init; }

        public int OutputReads => Volatile.Read(ref _outputReads);

        public Task<GuestOutput> ReadStdoutAsync(CancellationToken cancellationToken)
        {
            var n = Interlocked.Increment(ref _outputReads);
            if (EndlessOutput is { } endless)
            {
                return Task.FromResult(new GuestOutput(endless, (long)(n - 1) * endless.Length));
            }

            var offset = Output.Take(n - 1).Sum(c => (long)c.Length);
            return Task.FromResult(new GuestOutput(n <= Output.Count ? Output[n - 1] : ReadOnlyMemory<byte>.Empty, offset));
        }

        public Task<GuestOutput> ReadStderrAsync(CancellationToken cancellationToken) => Task.FromResult(default(GuestOutput));

        public async Task WriteStdinAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken cancellationToken)
        {
            WriteStarted.TrySetResult();
            if (Gate is not null)
            {
                await Gate.Task.WaitAsync(cancellationToken);
            }

            Assert.False(Closed.Task.IsCompleted, "a write after the close");
            lock (_received)
            {
                Assert.True(_received.TryAdd(offset, data.ToArray()), $"offset {offset} written twice");
            }
        }

        public Task CloseStdinAsync(CancellationToken cancellationToken)
        {
            lock (_received)
            {
                var all = new List<byte>();
                foreach (var (offset, data) in _received)
                {
                    Assert.Equal(all.Count, offset);
                    all.AddRange(data);
                }

                Closed.TrySetResult(all.ToArray());
            }

            return Task.CompletedTask;
        }
    }

    /// <summary>
    /// A guest whose stdout answers arrive out of order: it waits until the shim has <see cref="StdioForwarder.Window"/>
    /// reads out (or the output runs out), hands the pieces out in the order asked, then answers the last first.
    /// </summary>
    private sealed class ShufflingGuest(IReadOnlyList<byte[]> output) : IGuestStdio
    {
        private readonly List<TaskCompletionSource<GuestOutput>> _asked = [];
        private int _next;
        private long _offset;

        public int MostInFlight { get; private set; }

        public Task<GuestOutput> ReadStdoutAsync(CancellationToken cancellationToken)
        {
            var answer = new TaskCompletionSource<GuestOutput>(TaskCreationOptions.RunContinuationsAsynchronously);
            List<(TaskCompletionSource<GuestOutput>, GuestOutput)> ready = [];
            lock (_asked)
            {
                _asked.Add(answer);
                MostInFlight = Math.Max(MostInFlight, _asked.Count);
                if (_asked.Count == StdioForwarder.Window || _next + _asked.Count > output.Count)
                {
                    foreach (var asked in _asked)
                    {
                        var piece = _next < output.Count ? output[_next++] : [];
                        ready.Add((asked, new GuestOutput(piece, _offset)));
                        _offset += piece.Length;
                    }

                    _asked.Clear();
                }
            }

            ready.Reverse();
            foreach (var (asked, result) in ready)
            {
                asked.SetResult(result);
            }

            return answer.Task;
        }

        public Task<GuestOutput> ReadStderrAsync(CancellationToken cancellationToken) => Task.FromResult(default(GuestOutput));

        public Task WriteStdinAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task CloseStdinAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>Keeps every log line, so a test can wait for one.</summary>
    private sealed class CapturingLogger : ILogger
    {
        private readonly List<string> _lines = [];
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_lines)
            {
                _lines.Add(formatter(state, exception));
                _changed.TrySetResult();
                _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }

        public async Task WaitForAsync(string text, TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            while (true)
            {
                Task changed;
                lock (_lines)
                {
                    if (_lines.Exists(l => l.Contains(text, StringComparison.Ordinal)))
                    {
                        return;
                    }

                    changed = _changed.Task;
                }

                await changed.WaitAsync(cts.Token);
            }
        }
    }
}
