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
    private readonly StdioConfig _config;
    private readonly IGuestStdio _guest;
    private readonly ILogger _logger;
    private readonly string _name;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _stdinDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private FifoReader? _stdinReader;
    private Task _output = Task.CompletedTask;
    private int _stdinClosed;

    public StdioForwarder(StdioConfig config, IGuestStdio guest, ILogger logger, string name)
    {
        _config = config;
        _guest = guest;
        _logger = logger;
        _name = name;
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
            _stdinReader = new FifoReader(FifoPath(_config.Stdin));
            var thread = new Thread(CopyIn) { IsBackground = true, Name = $"stdin {_name}" };
            thread.Start();
        }
    }

    /// <summary>
    /// CloseIO(stdin): the guest's stdin closes only after everything written to the FIFO was delivered. The
    /// client closes its end first; a client that keeps it open gets its stdin closed after a grace period.
    /// </summary>
    public async Task CloseStdinAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _stdinDone.Task.WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
        }
        catch (TimeoutException)
        {
            _stdinReader?.Wake();
            await _stdinDone.Task.WaitAsync(cancellationToken);
        }

        await CloseGuestStdinAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        _stdinReader?.Wake();
        await _stop.CancelAsync();
        await _output.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _stdinDone.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private async Task CopyOutAsync(string path, Func<CancellationToken, Task<ReadOnlyMemory<byte>>> read, string stream)
    {
        FileStream? fifo = null;
        try
        {
            // O_RDWR never blocks in open and never fails with EPIPE when the client goes away.
            fifo = new FileStream(
                File.OpenHandle(FifoPath(path), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite), FileAccess.Write, 0);
            while (true)
            {
                var data = await read(_stop.Token);
                if (data.IsEmpty)
                {
                    break;
                }

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
            if (fifo is not null)
            {
                await fifo.DisposeAsync();
            }
        }
    }

    private void CopyIn()
    {
        var reader = _stdinReader!;
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var n = reader.Read(buffer);
                if (n == 0)
                {
                    break;
                }

                _guest.WriteStdinAsync(buffer.AsMemory(0, n), _stop.Token).GetAwaiter().GetResult();
            }

            if (!_stop.IsCancellationRequested)
            {
                CloseGuestStdinAsync(_stop.Token).GetAwaiter().GetResult();
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            LogCopyFailed(_logger, _name, "stdin", e.Message);
        }
        finally
        {
            reader.Dispose();
            _stdinDone.TrySetResult();
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Process}: {Stream} copy stopped: {Reason}")]
    private static partial void LogCopyFailed(ILogger logger, string process, string stream, string reason);
}
