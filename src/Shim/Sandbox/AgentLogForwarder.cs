using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Sandbox;

/// <summary>
/// Copies the guest agent's warnings and errors (a spec field it cannot honour, a cleanup that failed, ...) into
/// the shim's log, which containerd copies into its own: the guest console is deleted with the pod. A long poll
/// of GetLogRecords; each record is logged at its level, tagged with the sandbox and the container (and exec).
/// Records are acknowledged by sequence number with the next call, so one whose answer was lost comes again and
/// none is logged twice.
/// </summary>
public sealed partial class AgentLogForwarder : IAsyncDisposable
{
    /// <summary>How long the last fetch (in <see cref="StopAsync"/>) may take: teardown must not hang on it.</summary>
    private static readonly TimeSpan FinalFetchTimeout = TimeSpan.FromSeconds(2);

    private readonly AgentClient _agent;
    private readonly string _sandboxId;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private ulong _lastSequence;
    private ulong _droppedSeen;

    /// <summary>Set when forwarding cannot go on (an agent without the RPC, a lost connection): no final fetch.</summary>
    private volatile bool _ended;
    private int _stopping;

    private AgentLogForwarder(AgentClient agent, string sandboxId, ILogger logger)
    {
        _agent = agent;
        _sandboxId = sandboxId;
        _logger = logger;
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Completes when the long poll has ended (stopped, or the agent cannot serve it).</summary>
    public Task Completion => _loop;

    /// <summary>Starts forwarding; call once the agent answers.</summary>
    public static AgentLogForwarder Start(AgentClient agent, string sandboxId, ILogger logger) => new(agent, sandboxId, logger);

    /// <summary>
    /// Ends the long poll, then fetches what the agent still holds without waiting (e.g. what DestroySandbox just
    /// logged). Call before closing the agent connection. Idempotent; never throws.
    /// </summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopping, 1) == 1)
        {
            await _loop;
            return;
        }

        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
        if (_ended)
        {
            return;
        }

        using var timeout = new CancellationTokenSource(FinalFetchTimeout);
        try
        {
            // A full answer may leave more behind: a few rounds, bounded by the timeout.
            for (var round = 0; round < 8; round++)
            {
                var batch = await FetchAsync(wait: false, timeout.Token);
                Write(batch);
                if (batch.Records.Count == 0)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is TtrpcException or OperationCanceledException)
        {
            LogLastFetchFailed(_logger, _sandboxId, e.Message);
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync();

    private Task<LogRecords> FetchAsync(bool wait, CancellationToken cancellationToken) =>
        _agent.GetLogRecordsAsync(new GetLogRecordsRequest { NoWait = !wait, AfterSequence = _lastSequence }, null, cancellationToken);

    private async Task LoopAsync()
    {
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            LogRecords batch;
            try
            {
                batch = await FetchAsync(wait: true, token);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (TtrpcException e) when (e.Code == TtrpcStatusCode.Unimplemented)
            {
                _ended = true;
                LogUnsupported(_logger, _sandboxId);
                return;
            }
            catch (TtrpcException e) when (e.Code is TtrpcStatusCode.Unavailable or TtrpcStatusCode.Cancelled)
            {
                // The VM or its agent went away: whoever stops the sandbox reports that.
                _ended = true;
                LogEnded(_logger, _sandboxId, e.Message);
                return;
            }
            catch (TtrpcException e)
            {
                _ended = true;
                LogFailed(_logger, _sandboxId, e.Code, e.Message);
                return;
            }

            Write(batch);
        }
    }

    private void Write(LogRecords batch)
    {
        if (batch.DroppedTotal > _droppedSeen)
        {
            LogDropped(_logger, _sandboxId, batch.DroppedTotal - _droppedSeen);
            _droppedSeen = batch.DroppedTotal;
        }

        foreach (var record in batch.Records)
        {
            if (record.Sequence <= _lastSequence)
            {
                continue;
            }

            _lastSequence = record.Sequence;
            var level = record.Level switch
            {
                GuestLogLevel.Error => LogLevel.Error,
                GuestLogLevel.Critical => LogLevel.Critical,
                _ => LogLevel.Warning,
            };
            if (record.ContainerId.Length == 0)
            {
                LogGuest(_logger, level, _sandboxId, record.Message);
            }
            else if (record.ExecId.Length == 0)
            {
                LogGuestContainer(_logger, level, _sandboxId, record.ContainerId, record.Message);
            }
            else
            {
                LogGuestExec(_logger, level, _sandboxId, record.ContainerId, record.ExecId, record.Message);
            }
        }
    }

    [LoggerMessage(Message = "sandbox {SandboxId}: guest agent: {Message}")]
    private static partial void LogGuest(ILogger logger, LogLevel level, string sandboxId, string message);

    [LoggerMessage(Message = "sandbox {SandboxId} container {ContainerId}: guest agent: {Message}")]
    private static partial void LogGuestContainer(ILogger logger, LogLevel level, string sandboxId, string containerId, string message);

    [LoggerMessage(Message = "sandbox {SandboxId} container {ContainerId} exec {ExecId}: guest agent: {Message}")]
    private static partial void LogGuestExec(ILogger logger, LogLevel level, string sandboxId, string containerId, string execId, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: the guest agent dropped {Count} warning(s) before they could be sent (its queue was full)")]
    private static partial void LogDropped(ILogger logger, string sandboxId, ulong count);

    [LoggerMessage(Level = LogLevel.Debug, Message = "sandbox {SandboxId}: the guest agent has no GetLogRecords (an older agent): its warnings stay on the guest console")]
    private static partial void LogUnsupported(ILogger logger, string sandboxId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "sandbox {SandboxId}: guest agent log forwarding ended: {Reason}")]
    private static partial void LogEnded(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "sandbox {SandboxId}: last fetch of the guest agent's log records failed: {Reason}")]
    private static partial void LogLastFetchFailed(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: guest agent log forwarding stopped: GetLogRecords answered {Code}: {Reason}")]
    private static partial void LogFailed(ILogger logger, string sandboxId, TtrpcStatusCode code, string reason);
}
