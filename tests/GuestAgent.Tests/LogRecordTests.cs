using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent.Logging;

namespace ShimV2.GuestAgent.Tests;

/// <summary>The agent's warnings kept for the host (GetLogRecords): what is captured, how it is tagged, the queue.</summary>
public sealed partial class LogRecordTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly LogRecordQueue _queue = new(capacity: 3);
    private readonly LoggerFactory _factory;
    private readonly ILogger _logger;

    public LogRecordTests()
    {
        _factory = new LoggerFactory([new LogRecordCapture(_queue)]);
        _logger = _factory.CreateLogger("ShimV2.GuestAgent.service");
    }

    public void Dispose() => _factory.Dispose();

    [Fact]
    public async Task A_container_warning_carries_the_container_id_from_the_log_call_not_in_its_text()
    {
        var before = DateTimeOffset.UtcNow;
        LogContainerWarning(_logger, "c1", "AppArmor profile \"x\" not applied");

        var r = Assert.Single((await Take()).Records);
        Assert.Equal(GuestLogLevel.Warning, r.Level);
        Assert.Equal("c1", r.ContainerId);
        Assert.Equal("", r.ExecId);
        Assert.Equal("service", r.Category);
        Assert.Equal("AppArmor profile \"x\" not applied", r.Message);
        Assert.InRange(r.TimeUnixNano, before.ToUnixTimeMilliseconds() * 1_000_000, DateTimeOffset.UtcNow.AddSeconds(1).ToUnixTimeMilliseconds() * 1_000_000);
    }

    [Fact]
    public async Task An_exec_warning_carries_container_and_exec()
    {
        LogExecWarning(_logger, "c1", "e7", "unknown capabilities ignored: CAP_BOGUS");

        var r = Assert.Single((await Take()).Records);
        Assert.Equal(("c1", "e7"), (r.ContainerId, r.ExecId));
        Assert.Equal("unknown capabilities ignored: CAP_BOGUS", r.Message);
    }

    [Fact]
    public async Task Only_warnings_and_worse_are_kept_with_their_level_and_exception()
    {
        LogInfo(_logger, "c1");
        LogGuestError(_logger, new IOException("disk gone"), "no transport");
        LogFatal(_logger);

        var records = (await Take()).Records;
        Assert.Equal(2, records.Count);
        Assert.Equal((GuestLogLevel.Error, "", "no transport: IOException: disk gone"), (records[0].Level, records[0].ContainerId, records[0].Message));
        Assert.Equal(GuestLogLevel.Critical, records[1].Level);
    }

    [Fact]
    public async Task A_message_that_does_not_start_with_the_id_prefix_is_kept_whole()
    {
        LogCleanup(_logger, "c1", "cgroup /sys/fs/cgroup/c1");

        var r = Assert.Single((await Take()).Records);
        Assert.Equal("c1", r.ContainerId);
        Assert.Equal("cleanup of cgroup /sys/fs/cgroup/c1 failed for c1", r.Message);
    }

    [Fact]
    public async Task A_long_message_is_cut()
    {
        LogGuestWarning(_logger, new string('x', 10_000));

        var r = Assert.Single((await Take()).Records);
        Assert.Equal(LogRecordCapture.MaxMessageLength, r.Message.Length);
        Assert.EndsWith("...", r.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Records_are_numbered_and_answered_until_acknowledged()
    {
        LogGuestWarning(_logger, "w1");
        LogGuestWarning(_logger, "w2");

        var first = await Take();
        Assert.Equal([(1ul, "w1"), (2ul, "w2")], first.Records.Select(r => (r.Sequence, r.Message)));

        // The answer was lost (the host cancelled that call): asking again after 0 gets the same records.
        Assert.Equal([1ul, 2ul], (await Take()).Records.Select(r => r.Sequence));

        // Acknowledged: forgotten.
        var none = await _queue.TakeAsync(2, 10, wait: false, CancellationToken.None);
        Assert.Empty(none.Records);
        Assert.Equal(0, _queue.Count);
        LogGuestWarning(_logger, "w3");
        Assert.Equal([(3ul, "w3")], (await Take(after: 2)).Records.Select(r => (r.Sequence, r.Message)));
    }

    [Fact]
    public async Task When_full_the_oldest_unsent_go_and_are_counted()
    {
        for (var i = 1; i <= 5; i++)
        {
            LogGuestWarning(_logger, $"w{i}");
        }

        var first = await Take();
        Assert.Equal(["w3", "w4", "w5"], first.Records.Select(r => r.Message));
        Assert.Equal(2ul, first.DroppedTotal);

        // Sent but not yet acknowledged: pushed out without counting (the host has most likely seen them).
        LogGuestWarning(_logger, "w6");
        var next = await Take(after: 5);
        Assert.Equal(["w6"], next.Records.Select(r => r.Message));
        Assert.Equal(2ul, next.DroppedTotal);
    }

    [Fact]
    public async Task A_batch_is_at_most_max_records_oldest_first()
    {
        LogGuestWarning(_logger, "w1");
        LogGuestWarning(_logger, "w2");
        LogGuestWarning(_logger, "w3");

        Assert.Equal(["w1", "w2"], (await _queue.TakeAsync(0, 2, wait: true, CancellationToken.None)).Records.Select(r => r.Message));
        Assert.Equal(["w3"], (await _queue.TakeAsync(2, 2, wait: true, CancellationToken.None)).Records.Select(r => r.Message));
    }

    [Fact]
    public async Task A_waiting_take_answers_when_a_record_arrives_and_can_be_cancelled()
    {
        var waiting = _queue.TakeAsync(0, 10, wait: true, CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        LogGuestWarning(_logger, "late");
        Assert.Equal("late", Assert.Single((await waiting.WaitAsync(Timeout)).Records).Message);

        using var cancel = new CancellationTokenSource();
        var cancelled = _queue.TakeAsync(1, 10, wait: true, cancel.Token);
        Assert.False(cancelled.IsCompleted);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Timeout));

        LogGuestWarning(_logger, "after");
        Assert.Equal("after", Assert.Single((await Take(after: 1)).Records).Message);
    }

    private Task<LogRecords> Take(ulong after = 0) => _queue.TakeAsync(after, 100, wait: true, CancellationToken.None).WaitAsync(Timeout);

    [LoggerMessage(Level = LogLevel.Warning, Message = "container {ContainerId}: {Message}")]
    private static partial void LogContainerWarning(ILogger logger, string containerId, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "exec {ContainerId}/{ExecId}: {Message}")]
    private static partial void LogExecWarning(ILogger logger, string containerId, string execId, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Message}")]
    private static partial void LogGuestWarning(ILogger logger, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cleanup of {What} failed for {ContainerId}")]
    private static partial void LogCleanup(ILogger logger, string containerId, string what);

    [LoggerMessage(Level = LogLevel.Information, Message = "container {ContainerId} started")]
    private static partial void LogInfo(ILogger logger, string containerId);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Message}")]
    private static partial void LogGuestError(ILogger logger, Exception exception, string message);

    [LoggerMessage(Level = LogLevel.Critical, Message = "powering off")]
    private static partial void LogFatal(ILogger logger);
}
