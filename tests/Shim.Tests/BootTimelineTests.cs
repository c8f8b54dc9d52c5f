using System.Text.RegularExpressions;
using Containerd.Task.V2;
using Microsoft.Extensions.Logging;
using ShimV2.Shim.Timeline;

namespace ShimV2.Shim.Tests;

/// <summary>The boot timeline's log lines, in the format eng/bench parses.</summary>
public sealed partial class BootTimelineTests
{
    [GeneratedRegex(@"phase (\S+) at (\d+) ms")]
    private static partial Regex BenchPattern();

    [Fact]
    public void Phases_are_logged_as_milliseconds_since_the_origin_in_the_agreed_format()
    {
        var time = new ManualTime();
        var log = new LineLogger();
        var sandbox = BootTimeline.ForSandbox("pod1", log, time: time);
        time.Advance(TimeSpan.FromMilliseconds(40));
        var spawned = time.GetTimestamp();
        time.Advance(TimeSpan.FromMilliseconds(1500));
        sandbox.MarkAt(BootPhase.QemuSpawned, spawned);
        sandbox.Mark(BootPhase.AgentReady);
        BootTimeline.ForContainer("app", log, sandbox.Origin, time).Mark(BootPhase.Created);

        Assert.Equal(
            [
                "sandbox pod1: phase qemu-spawned at 40 ms",
                "sandbox pod1: phase agent-ready at 1540 ms",
                "container app: phase created at 1540 ms",
            ],
            log.Lines);
        Assert.All(log.Lines, l => Assert.Matches(BenchPattern(), l));
        Assert.All(log.Levels, l => Assert.Equal(LogLevel.Information, l));
    }

    [Fact]
    public void A_timestamp_before_the_origin_counts_as_zero()
    {
        var time = new ManualTime();
        var early = time.GetTimestamp();
        time.Advance(TimeSpan.FromSeconds(1));
        var timeline = BootTimeline.ForContainer("c", new LineLogger(), time: time);
        Assert.Equal(0, timeline.ElapsedMs(early));
    }

    [Theory]
    [InlineData(40L, 13000L, 6000UL, 7000L)] // the guest's clock saw 6 s of a 13 s boot
    [InlineData(40L, 13000L, 20000UL, 40L)] // a guest clock running fast: never before QEMU was spawned
    [InlineData(40L, 13000L, 13000UL, 40L)]
    [InlineData(40L, 13000L, 1UL, 12999L)]
    public void Kernel_up_is_agent_ready_minus_the_guests_boot_time(long spawnedMs, long agentReadyMs, ulong guestMs, long expected) =>
        Assert.Equal(expected, BootTimeline.KernelUpMs(spawnedMs, agentReadyMs, guestMs));

    [Fact]
    public void Kernel_up_is_unknown_when_the_agent_reports_no_boot_time() =>
        Assert.Null(BootTimeline.KernelUpMs(40, 13000, 0));

    [Fact]
    public async Task A_pod_start_logs_the_containers_created_and_started_phases_and_hands_the_launch_a_timeline()
    {
        var log = new LineLogger();
        await using var h = new TaskServiceHarness(loggerFactory: new SingleLoggerFactory(log));
        await h.CreateAsync("c1");
        await h.Service.StartAsync(new StartRequest { Id = "c1" }, CancellationToken.None);

        Assert.NotNull(Assert.Single(h.Launcher.Requests).Timeline);
        var phases = log.Lines.Select(l => BenchPattern().Match(l)).Where(m => m.Success).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["created", "started"], phases);
        Assert.Contains(log.Lines, l => l.StartsWith("container c1: phase started at ", StringComparison.Ordinal));
    }

    /// <summary>A clock that moves only when told.</summary>
    private sealed class ManualTime : TimeProvider
    {
        private long _ticks = 1_000_000;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }

    private sealed class LineLogger : ILogger
    {
        private readonly List<(LogLevel Level, string Line)> _entries = [];

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_entries)
                {
                    return [.. _entries.Select(e => e.Line)];
                }
            }
        }

        public IReadOnlyList<LogLevel> Levels
        {
            get
            {
                lock (_entries)
                {
                    return [.. _entries.Select(e => e.Level)];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_entries)
            {
                _entries.Add((logLevel, formatter(state, exception)));
            }
        }
    }

    private sealed class SingleLoggerFactory(ILogger logger) : ILoggerFactory
    {
        public void AddProvider(ILoggerProvider provider)
        {
        }

        public ILogger CreateLogger(string categoryName) => logger;

        public void Dispose()
        {
        }
    }
}
