using Microsoft.Extensions.Logging;
using ShimV2.Shim.Native;

namespace ShimV2.Shim.Stdio;

/// <summary>
/// A pair of copy loops per stream between containerd's FIFOs and the guest process (firecracker-containerd's
/// ioproxy): <see cref="OutputDrained"/> completes once stdout and stderr reached end of stream and were written
/// out, so an exit is reported only after its output.
/// </summary>
public sealed partial class StdioForwarder : IAsyncDisposable
{
    /// <summary>How long a client that asked for CloseIO(stdin) may keep the stdin FIFO open.</summary>
    public static readonly TimeSpan DefaultStdinCloseGrace = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Most stdin sent per WriteStdin: whatever the FIFO holds, up to this; with its framing the request still fits
    /// the agent's 1 MiB pooled buffers.
    /// </summary>
    private const int StdinChunk = (1 << 20) - 4096;

    private const int StdinFirstChunk = 64 * 1024;

    private readonly StdioConfig _config;
    private readonly IGuestStdio _guest;
    private readonly ILogger _logger;
    private readonly string _name;
    private readonly TimeSpan _stdinCloseGrace;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _stdinDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private FifoReader? _stdinReader;
    private Task _output = Task.CompletedTask;
    private int _stdinClosed;
    private readonly Lock _drainLock = new();
    private int _closeRequested;
    private bool _drainRequested;

    public StdioForwarder(StdioConfig config, IGuestStdio guest, ILogger logger, string name, TimeSpan? stdinCloseGrace = null)
    {
        _config = config;
        _guest = guest;
        _logger = logger;
        _name = name;
        _stdinCloseGrace = stdinCloseGrace ?? DefaultStdinCloseGrace;
        if (!config.HasStdin)
        {
            _stdinDone.TrySetResult();
        }
    }

    /// <summary>stdout and stderr fully copied (or abandoned at teardown).</summary>
    public Task OutputDrained => _output;

    /// <summary>Starts the copy loops. Called once the guest process exists, before it runs.</summary>
    public void Start()
    {
        var copies = new List<Task>(2);
        if (_config.HasStdout)
        {
            copies.Add(CopyOutAsync(_config.Stdout, _guest.ReadStdoutAsync, "stdout"));
        }

        if (_config.HasStderr)
        {
            copies.Add(CopyOutAsync(_config.Stderr, _guest.ReadStderrAsync, "stderr"));
        }

        _output = Task.WhenAll(copies);
        if (_config.HasStdin)
        {
            lock (_drainLock)
            {
                _stdinReader = new FifoReader(FifoPath(_config.Stdin));
                if (_drainRequested)
                {
                    _stdinReader.Drain();
                }
            }

            var thread = new Thread(CopyIn) { IsBackground = true, Name = $"stdin {_name}" };
            thread.Start();
        }
    }

    /// <summary>
    /// CloseIO(stdin). Returns at once: clients such as `ctr` close their end of the FIFO only after CloseIO
    /// answered. The copy loop closes the guest's stdin when it reaches the FIFO's end, after delivering all it
    /// read; a client that keeps the FIFO open gets, after a grace period, what it wrote delivered and then its
    /// stdin closed. A process without stdin has it closed now.
    /// </summary>
    public Task CloseStdinAsync(CancellationToken cancellationToken)
    {
        if (!_config.HasStdin)
        {
            return CloseGuestStdinAsync(cancellationToken);
        }

        if (Interlocked.Exchange(ref _closeRequested, 1) == 0)
        {
            _ = DrainStdinAfterGraceAsync();
        }

        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        _stdinReader?.Wake();
        await _stop.CancelAsync();
        await _output.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _stdinDone.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private async Task DrainStdinAfterGraceAsync()
    {
        try
        {
            await _stdinDone.Task.WaitAsync(_stdinCloseGrace, _stop.Token);
        }
        catch (TimeoutException)
        {
            LogStdinHeldOpen(_logger, _name, _stdinCloseGrace.TotalSeconds);
            lock (_drainLock)
            {
                _drainRequested = true;
                _stdinReader?.Drain();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Copies one output stream to its FIFO. The next chunk is asked for before this one is written, so the guest's
    /// round trip overlaps the write; one read is outstanding at a time (the order holds) and a client that stops
    /// reading stops the copy with two chunks held here.
    /// </summary>
    private async Task CopyOutAsync(string path, Func<CancellationToken, Task<ReadOnlyMemory<byte>>> read, string stream)
    {
        FileStream? fifo = null;
        var next = Task.FromResult(ReadOnlyMemory<byte>.Empty);
        try
        {
            // O_RDWR never blocks in open and never fails with EPIPE when the client goes away.
            var handle = File.OpenHandle(FifoPath(path), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            FifoReader.TryEnlarge((int)handle.DangerousGetHandle());
            fifo = new FileStream(handle, FileAccess.Write, 0);
            next = read(_stop.Token);
            while (true)
            {
                var data = await next;
                if (data.IsEmpty)
                {
                    break;
                }

                next = read(_stop.Token);

                if (fifo is null)
                {
                    continue;
                }

                try
                {
                    await fifo.WriteAsync(data, _stop.Token);
                }
                catch (IOException e)
                {
                    // Keep draining the guest so the process never blocks on a full pipe.
                    LogCopyFailed(_logger, _name, stream, e.Message);
                    await fifo.DisposeAsync();
                    fifo = null;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            LogCopyFailed(_logger, _name, stream, e.Message);
        }
        finally
        {
            // A read still outstanding (the loop stopped on an error or at teardown) is not waited for, only observed.
            _ = next.ContinueWith(static t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            if (fifo is not null)
            {
                await fifo.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Copies the stdin FIFO to the guest, one chunk in flight while the next is read. A chunk is sent only once the
    /// one before it was delivered: the order holds, and a process that does not read its stdin stops the copy
    /// with at most two chunks held here (the client then blocks on the full FIFO).
    /// </summary>
    private void CopyIn()
    {
        var reader = _stdinReader!;
        // Small while the client types, grown once it streams: an idle process does not hold MiBs here.
        byte[][] buffers = [new byte[StdinFirstChunk], new byte[StdinFirstChunk]];
        var current = 0;
        var inFlight = Task.CompletedTask;
        var streaming = false;
        try
        {
            try
            {
                while (true)
                {
                    if (streaming && buffers[current].Length < StdinChunk)
                    {
                        buffers[current] = new byte[Math.Min(buffers[current].Length * 4, StdinChunk)];
                    }

                    var n = reader.Read(buffers[current]);
                    if (n == 0)
                    {
                        break;
                    }

                    streaming = n == buffers[current].Length;

                    inFlight.GetAwaiter().GetResult();
                    inFlight = _guest.WriteStdinAsync(buffers[current].AsMemory(0, n), _stop.Token);
                    current ^= 1;
                }

                inFlight.GetAwaiter().GetResult();
            }
            finally
            {
                reader.Dispose();
            }

            CloseGuestStdin();
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            LogCopyFailed(_logger, _name, "stdin", e.Message);
            // Whatever went wrong, no more stdin will come: the process must not wait for it forever. The close
            // goes after the write still in flight, whatever became of it.
            inFlight.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing).GetAwaiter().GetResult();
            CloseGuestStdin();
        }
        finally
        {
            _stdinDone.TrySetResult();
        }
    }

    /// <summary>From the copy thread; never throws. Nothing to close at teardown: the process is going away.</summary>
    private void CloseGuestStdin()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        try
        {
            CloseGuestStdinAsync(_stop.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            LogCopyFailed(_logger, _name, "stdin close", e.Message);
        }
    }

    private async Task CloseGuestStdinAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _stdinClosed, 1) == 0)
        {
            await _guest.CloseStdinAsync(cancellationToken);
        }
    }

    private static string FifoPath(string path) =>
        path.StartsWith("file://", StringComparison.Ordinal) ? new Uri(path).LocalPath : path;

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Process}: stdin FIFO still open {Seconds} s after CloseIO: closing the process's stdin after what was written")]
    private static partial void LogStdinHeldOpen(ILogger logger, string process, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Process}: {Stream} copy stopped: {Reason}")]
    private static partial void LogCopyFailed(ILogger logger, string process, string stream, string reason);
}
