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

    /// <summary>Bytes a process's streams move, in and out together, before their end gives memory back.</summary>
    private const long TrimAfterBytes = 16L << 20;

    /// <summary>
    /// Reads per output stream, and stdin writes, in flight at once. One at a time leaves the channel idle for a
    /// round trip per chunk: the request queues behind the other direction's data, and over virtio-serial that
    /// costs more than moving the chunk.
    /// </summary>
    public const int Window = 4;

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
    private long _bytesMoved;
    private int _loopsLeft;

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

        _loopsLeft = copies.Count + (_config.HasStdin ? 1 : 0);
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
    /// Copies one output stream to its FIFO. <see cref="Window"/> reads are kept in flight, so the guest always has
    /// one to answer while an answer crosses the channel or is written out; answers may come in any order and are
    /// written in stream order. A client that stops reading stops the copy with at most twice the window held here.
    /// </summary>
    private async Task CopyOutAsync(string path, Func<CancellationToken, Task<GuestOutput>> read, string stream)
    {
        FileStream? fifo = null;
        var reads = new List<Task<GuestOutput>>(Window);
        var early = new Dictionary<long, ReadOnlyMemory<byte>>();
        try
        {
            // O_RDWR never blocks in open and never fails with EPIPE when the client goes away.
            var handle = File.OpenHandle(FifoPath(path), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            FifoReader.TryEnlarge((int)handle.DangerousGetHandle());
            fifo = new FileStream(handle, FileAccess.Write, 0);
            for (var i = 0; i < Window; i++)
            {
                reads.Add(read(_stop.Token));
            }

            var written = 0L;
            long? end = null;
            while (true)
            {
                while (early.Remove(written, out var data))
                {
                    written += data.Length;
                    Interlocked.Add(ref _bytesMoved, data.Length);
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

                if (written == end)
                {
                    break;
                }

                if (reads.Count == 0)
                {
                    throw new IOException($"the guest's {stream} ended at {end} with only {written} bytes in order");
                }

                var done = await Task.WhenAny(reads);
                reads.Remove(done);
                var answer = await done;
                if (answer.Data.IsEmpty)
                {
                    end = answer.Offset;
                    continue;
                }

                if (answer.Offset < written || !early.TryAdd(answer.Offset, answer.Data))
                {
                    throw new IOException($"the guest sent {stream} at offset {answer.Offset} twice");
                }

                if (end is null)
                {
                    reads.Add(read(_stop.Token));
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
            // Reads still outstanding (the loop stopped on an error or at teardown) are not waited for, only observed.
            foreach (var pending in reads)
            {
                _ = pending.ContinueWith(static t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }

            if (fifo is not null)
            {
                await fifo.DisposeAsync();
            }

            LoopEnded();
        }
    }

    /// <summary>
    /// After a large transfer the daemon would keep the heap it grew for it (the 1 MiB chunks are large objects,
    /// collected only with gen2, and the freed regions stay committed) for as long as the pod idles: a pod's shim
    /// is long-lived and mostly idle, so the memory is handed back once the process's streams are done.
    /// </summary>
    private void LoopEnded()
    {
        if (Interlocked.Decrement(ref _loopsLeft) == 0 && Interlocked.Read(ref _bytesMoved) >= TrimAfterBytes)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static _ => GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true), null);
        }
    }

    /// <summary>
    /// Copies the stdin FIFO to the guest with up to <see cref="Window"/> writes in flight while the next chunk is
    /// read; each names its offset, so the guest delivers them in order. A process that does not read its stdin
    /// stops the copy with at most the window's chunks held here (the client then blocks on the full FIFO).
    /// </summary>
    private void CopyIn()
    {
        var reader = _stdinReader!;
        // Small while the client types, grown once it streams: an idle process does not hold MiBs here.
        var buffers = new byte[Window][];
        for (var i = 0; i < Window; i++)
        {
            buffers[i] = new byte[StdinFirstChunk];
        }

        // In order; the oldest write uses the buffer to be filled next.
        var inFlight = new Queue<Task>(Window);
        var current = 0;
        var offset = 0L;
        var streaming = false;
        try
        {
            try
            {
                while (true)
                {
                    if (inFlight.Count == Window)
                    {
                        inFlight.Dequeue().GetAwaiter().GetResult();
                    }

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
                    inFlight.Enqueue(_guest.WriteStdinAsync(buffers[current].AsMemory(0, n), offset, _stop.Token));
                    offset += n;
                    Interlocked.Add(ref _bytesMoved, n);
                    current = (current + 1) % Window;
                }

                while (inFlight.TryDequeue(out var write))
                {
                    write.GetAwaiter().GetResult();
                }
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
            // goes after the writes still in flight, whatever became of them.
            while (inFlight.TryDequeue(out var write))
            {
                write.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing).GetAwaiter().GetResult();
            }

            CloseGuestStdin();
        }
        finally
        {
            _stdinDone.TrySetResult();
            LoopEnded();
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
