using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;

namespace ShimV2.GuestAgent.Logging;

/// <summary>
/// Keeps the agent's Warning-or-worse log records for the host (<see cref="LogRecordQueue"/>), next to the console
/// logger. Which container (and exec) a record is about comes from the structured state of the
/// <c>[LoggerMessage]</c> call: its <c>ContainerId</c> and <c>ExecId</c> parameters. Messages about one container
/// start with "container {ContainerId}: " (or "exec {ContainerId}/{ExecId}: ") so the console line says it; that
/// prefix is left out of the record, which carries the ids as fields.
/// </summary>
internal sealed class LogRecordCapture(LogRecordQueue queue) : ILoggerProvider
{
    /// <summary>Longest message kept: a batch of records stays far below the TTRPC frame limit.</summary>
    public const int MaxMessageLength = 4096;

    public const string ContainerIdKey = "ContainerId";
    public const string ExecIdKey = "ExecId";

    public LogRecordQueue Queue { get; } = queue;

    public ILogger CreateLogger(string categoryName) => new CaptureLogger(this, ShortName(categoryName));

    public void Dispose()
    {
    }

    /// <summary>The record for one log call; null below Warning.</summary>
    internal static LogRecord? ToRecord<TState>(
        string category, LogLevel level, TState state, Exception? exception, Func<TState, Exception?, string> formatter, DateTimeOffset now)
    {
        var guestLevel = level switch
        {
            LogLevel.Warning => GuestLogLevel.Warning,
            LogLevel.Error => GuestLogLevel.Error,
            LogLevel.Critical => GuestLogLevel.Critical,
            _ => GuestLogLevel.Unspecified,
        };
        if (guestLevel == GuestLogLevel.Unspecified)
        {
            return null;
        }

        string containerId = "", execId = "";
        if (state is IReadOnlyList<KeyValuePair<string, object?>> fields)
        {
            foreach (var (key, value) in fields)
            {
                if (key == ContainerIdKey)
                {
                    containerId = value?.ToString() ?? "";
                }
                else if (key == ExecIdKey)
                {
                    execId = value?.ToString() ?? "";
                }
            }
        }

        var message = WithoutPrefix(formatter(state, exception), containerId, execId);
        if (exception != null)
        {
            message += $": {exception.GetType().Name}: {exception.Message}";
        }

        if (message.Length > MaxMessageLength)
        {
            message = message[..(MaxMessageLength - 3)] + "...";
        }

        return new LogRecord
        {
            Level = guestLevel,
            TimeUnixNano = (now.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100,
            ContainerId = containerId,
            ExecId = execId,
            Category = category,
            Message = message,
        };
    }

    private static string WithoutPrefix(string message, string containerId, string execId)
    {
        if (containerId.Length == 0)
        {
            return message;
        }

        var prefix = execId.Length > 0 ? $"exec {containerId}/{execId}: " : $"container {containerId}: ";
        return message.StartsWith(prefix, StringComparison.Ordinal) ? message[prefix.Length..] : message;
    }

    private static string ShortName(string category)
    {
        var dot = category.LastIndexOf('.');
        return dot >= 0 ? category[(dot + 1)..] : category;
    }

    private sealed class CaptureLogger(LogRecordCapture provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel is >= LogLevel.Warning and < LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (ToRecord(category, logLevel, state, exception, formatter, DateTimeOffset.UtcNow) is { } record)
            {
                provider.Queue.Add(record);
            }
        }
    }
}
