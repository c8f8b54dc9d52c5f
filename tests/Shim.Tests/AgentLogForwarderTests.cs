using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Agent.Protocol;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Shim.Sandbox;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Tests;

/// <summary>The guest agent's warnings reach the shim's log (containerd's log): AgentLogForwarder over a fake
/// agent on a real TTRPC connection.</summary>
public sealed class AgentLogForwarderTests : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly string _dir = Directory.CreateTempSubdirectory("shim-agentlog-").FullName;
    private readonly RecordingLogger _log = new();
    private TtrpcServer? _server;
    private Socket? _listener;
    private Task? _serving;
    private TtrpcClient? _client;

    [Fact]
    public async Task Records_are_logged_at_their_level_tagged_with_sandbox_container_and_exec()
    {
        var agent = new FakeAgent();
        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Warning, Message = "hot-plugged memory will not come online by itself" });
        var forwarder = AgentLogForwarder.Start(await ConnectAsync(agent), "pod1", _log);

        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Warning, ContainerId = "c1", Message = "AppArmor profile \"x\" not applied" });
        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Error, ContainerId = "c1", ExecId = "e1", Message = "cleanup failed" });
        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Critical, Message = "unhandled exception: powering off" });
        await _log.WaitForCountAsync(4, Timeout);
        await forwarder.StopAsync();

        Assert.Equal(
            [
                (LogLevel.Warning, "sandbox pod1: guest agent: hot-plugged memory will not come online by itself"),
                (LogLevel.Warning, "sandbox pod1 container c1: guest agent: AppArmor profile \"x\" not applied"),
                (LogLevel.Error, "sandbox pod1 container c1 exec e1: guest agent: cleanup failed"),
                (LogLevel.Critical, "sandbox pod1: guest agent: unhandled exception: powering off"),
            ],
            _log.Entries.Where(e => e.Level > LogLevel.Debug));
    }

    [Fact]
    public async Task Each_call_acknowledges_what_was_logged_and_a_repeated_record_is_logged_once()
    {
        var agent = new FakeAgent { IgnoreLogAcknowledgements = true };
        var forwarder = AgentLogForwarder.Start(await ConnectAsync(agent), "pod1", _log);
        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Warning, ContainerId = "c1", Message = "first" });
        await _log.WaitForCountAsync(1, Timeout);
        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Warning, ContainerId = "c1", Message = "second" });
        await _log.WaitForCountAsync(2, Timeout);
        await forwarder.StopAsync();

        Assert.Equal(["first", "second"], _log.Entries.Where(e => e.Level == LogLevel.Warning).Select(e => e.Message.Split(": ")[^1]));
        var requests = agent.LogRequests.ToArray();
        Assert.Equal([0ul, 1ul, 2ul], requests.Where(r => !r.NoWait).Take(3).Select(r => r.AfterSequence));
        // The last fetch, at stop, does not wait and acknowledges everything logged.
        Assert.True(requests[^1].NoWait);
        Assert.Equal(2ul, requests[^1].AfterSequence);
    }

    [Fact]
    public async Task A_record_logged_just_before_stop_is_logged_exactly_once()
    {
        var agent = new FakeAgent();
        var forwarder = AgentLogForwarder.Start(await ConnectAsync(agent), "pod1", _log);
        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Warning, ContainerId = "c1", Message = "processes still running 5 s after SIGKILL" });
        await forwarder.StopAsync();

        Assert.Single(_log.Entries, e => e.Level == LogLevel.Warning && e.Message.EndsWith("processes still running 5 s after SIGKILL", StringComparison.Ordinal));
        Assert.True(forwarder.Completion.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task Records_the_agent_dropped_are_counted_in_one_warning()
    {
        var agent = new FakeAgent { LogDroppedTotal = 7 };
        var forwarder = AgentLogForwarder.Start(await ConnectAsync(agent), "pod1", _log);
        agent.AddLogRecord(new LogRecord { Level = GuestLogLevel.Warning, Message = "w" });
        await _log.WaitForCountAsync(2, Timeout);
        await forwarder.StopAsync();

        var warnings = _log.Entries.Where(e => e.Level == LogLevel.Warning).Select(e => e.Message).ToList();
        Assert.Single(warnings, m => m.Contains("dropped 7 warning(s)", StringComparison.Ordinal));
        Assert.Contains("sandbox pod1: guest agent: w", warnings);
    }

    [Fact]
    public async Task An_agent_without_GetLogRecords_ends_forwarding_with_one_debug_line()
    {
        var agent = new FakeAgent(serveLogRecords: false);
        var forwarder = AgentLogForwarder.Start(await ConnectAsync(agent), "pod1", _log);
        await forwarder.Completion.WaitAsync(Timeout);
        await forwarder.StopAsync();

        var entry = Assert.Single(_log.Entries);
        Assert.Equal(LogLevel.Debug, entry.Level);
        Assert.Contains("has no GetLogRecords", entry.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_lost_connection_ends_forwarding_without_a_warning()
    {
        var forwarder = AgentLogForwarder.Start(await ConnectAsync(new FakeAgent()), "pod1", _log);
        await _client!.DisposeAsync();
        await forwarder.Completion.WaitAsync(Timeout);
        await forwarder.StopAsync();

        Assert.All(_log.Entries, e => Assert.Equal(LogLevel.Debug, e.Level));
        Assert.NotEmpty(_log.Entries);
    }

    public async ValueTask DisposeAsync()
    {
        if (_client is not null)
        {
            await _client.DisposeAsync();
        }

        if (_server is not null)
        {
            await _server.ShutdownAsync();
        }

        _listener?.Dispose();
        if (_serving is not null)
        {
            await _serving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        Directory.Delete(_dir, recursive: true);
    }

    private async Task<AgentClient> ConnectAsync(FakeAgent agent)
    {
        _server = new TtrpcServer([agent.Definition()], NullLogger.Instance);
        var socket = Path.Combine(_dir, "agent.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socket));
        _listener.Listen();
        _serving = _server.ServeAsync(_listener);
        _client = await TtrpcClient.ConnectUnixAsync(socket);
        return new AgentClient(_client);
    }

    private sealed class RecordingLogger : ILogger
    {
        private readonly List<(LogLevel Level, string Message)> _entries = [];
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public IReadOnlyList<(LogLevel Level, string Message)> Entries
        {
            get
            {
                lock (_entries)
                {
                    return [.. _entries];
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
                _changed.TrySetResult();
                _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }

        /// <summary>Waits until at least <paramref name="count"/> entries above Debug were logged.</summary>
        public async Task WaitForCountAsync(int count, TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            while (true)
            {
                Task changed;
                lock (_entries)
                {
                    if (_entries.Count(e => e.Level > LogLevel.Debug) >= count)
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
