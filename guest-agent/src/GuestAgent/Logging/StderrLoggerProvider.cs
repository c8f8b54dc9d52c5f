using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace ShimV2.GuestAgent.Logging;

/// <summary>
/// Log lines to stderr (the guest's serial console). The serial port is slow under emulation, so lines are
/// queued and written by one background thread: a request never waits for the console. When the queue is
/// full, lines are dropped and the count is reported with the next line written.
/// </summary>
internal sealed class StderrLoggerProvider : ILoggerProvider
{
    private const int QueueCapacity = 4096;

    private readonly LogLevel _minimum;
    private readonly Channel<(string? Line, TaskCompletionSource? Flushed)> _lines = Channel.CreateBounded<(string?, TaskCompletionSource?)>(
        new BoundedChannelOptions(QueueCapacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly Thread _writer;
    private readonly Stream _stderr;
    private long _dropped;

    public StderrLoggerProvider(LogLevel minimum, Stream? output = null)
    {
        _minimum = minimum;
        _stderr = output ?? new FileStream(new SafeFileHandle(2, ownsHandle: false), FileAccess.Write, 1);
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "log" };
        _writer.Start();
    }

    public ILogger CreateLogger(string categoryName) => new StderrLogger(this, ShortName(categoryName));

    /// <summary>Writes what is queued (bounded wait), e.g. before powering off.</summary>
    public void Flush(TimeSpan timeout)
    {
        var flushed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (_lines.Writer.TryWrite((null, flushed)))
        {
            flushed.Task.Wait(timeout);
        }
    }

    public void Dispose()
    {
        _lines.Writer.TryComplete();
        _writer.Join(TimeSpan.FromSeconds(2));
    }

    private static string ShortName(string category)
    {
        var dot = category.LastIndexOf('.');
        return dot >= 0 ? category[(dot + 1)..] : category;
    }

    private void Enqueue(string line)
    {
        if (!_lines.Writer.TryWrite((line, null)))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    private void WriteLoop()
    {
        var reader = _lines.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (reader.TryRead(out var item))
            {
                if (item.Flushed is { } flushed)
                {
                    flushed.TrySetResult();
                    continue;
                }

                var line = item.Line!;
                var dropped = Interlocked.Exchange(ref _dropped, 0);
                if (dropped > 0)
                {
                    line = $"csharp-agent: ({dropped} log lines dropped)\n{line}";
                }

                try
                {
                    _stderr.Write(Encoding.UTF8.GetBytes(line));
                }
                catch (IOException)
                {
                    // The console is gone: nothing to report to.
                }
            }
        }
    }

    private sealed class StderrLogger(StderrLoggerProvider provider, string category) : ILogger
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

            var sb = new StringBuilder(128);
            sb.Append("csharp-agent: ").Append(Level(logLevel)).Append(' ').Append(category).Append(": ").Append(formatter(state, exception));
            if (exception != null)
            {
                sb.Append(" | ").Append(exception.GetType().Name).Append(": ").Append(exception.Message);
                if (logLevel >= LogLevel.Error && exception.StackTrace is { } trace)
                {
                    sb.Append('\n').Append(trace);
                }
            }

            sb.Append('\n');
            provider.Enqueue(sb.ToString());
        }

        private static string Level(LogLevel level) => level switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            _ => "crit",
        };
    }
}
