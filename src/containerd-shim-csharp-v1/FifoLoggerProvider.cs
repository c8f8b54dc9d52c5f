using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace ShimV2.Cli;

/// <summary>
/// Writes logfmt lines (as containerd's Go shims do) to the bundle's log FIFO, which containerd copies into its
/// own log. A background writer with a bounded queue: logging never blocks the shim, even if nobody reads.
/// </summary>
internal sealed class FifoLoggerProvider : ILoggerProvider
{
    private readonly Channel<string> _lines = Channel.CreateBounded<string>(
        new BoundedChannelOptions(4096) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    private readonly Stream? _output;
    private readonly Task _writer;
    private readonly LogLevel _minimum;

    public FifoLoggerProvider(string? path, LogLevel minimum)
    {
        _minimum = minimum;
        if (path is not null)
        {
            try
            {
                // O_RDWR: opening never blocks, even before containerd (re)opens its reading end.
                _output = new FileStream(File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite), FileAccess.Write, 0);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _output = null;
            }
        }

        _writer = Task.Run(WriteAsync);
    }

    public ILogger CreateLogger(string categoryName) => new FifoLogger(this, categoryName);

    public void Dispose()
    {
        _lines.Writer.TryComplete();
        _writer.Wait(TimeSpan.FromSeconds(2));
        _output?.Dispose();
    }

    private void Enqueue(string line) => _lines.Writer.TryWrite(line);

    private async Task WriteAsync()
    {
        await foreach (var line in _lines.Reader.ReadAllAsync())
        {
            if (_output is null)
            {
                continue;
            }

            try
            {
                await _output.WriteAsync(Encoding.UTF8.GetBytes(line));
            }
            catch (IOException)
            {
                // containerd went away; lines are dropped until it reopens the FIFO.
            }
        }
    }

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trace",
        LogLevel.Debug => "debug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warning",
        LogLevel.Error => "error",
        _ => "fatal",
    };

    private static string Quote(string value) =>
        "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)
            .Replace("\n", "\\n", StringComparison.Ordinal) + "\"";

    private sealed class FifoLogger(FifoLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= provider._minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var message = formatter(state, exception);
            if (exception is not null && logLevel >= LogLevel.Error)
            {
                message += ": " + exception.Message;
            }

            var source = category[(category.LastIndexOf('.') + 1)..];
            provider.Enqueue(
                $"time=\"{DateTimeOffset.UtcNow:yyyy-MM-ddTHH:mm:ss.fffffffZ}\" level={Level(logLevel)} msg={Quote(message)} runtime=io.containerd.csharp.v1 source={source}\n");
        }
    }
}
