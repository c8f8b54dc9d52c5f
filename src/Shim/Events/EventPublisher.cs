using System.Threading.Channels;
using Containerd.Services.Events.Ttrpc.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Ttrpc;
using EventsApi = Containerd.Services.Events.Ttrpc.V1.Events;

namespace ShimV2.Shim.Events;

/// <summary>How the publisher holds events while containerd is away.</summary>
public sealed record EventPublisherOptions
{
    /// <summary>Events held at most; more are dropped (and logged) rather than growing without bound.</summary>
    public int Capacity { get; init; } = 4096;

    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan FirstRetryDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one event is retried (containerd restarting, or away) before it is given up.</summary>
    public TimeSpan GiveUpAfter { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>
/// One bounded queue and one forwarder publish every event to containerd, in order: the head event is retried with
/// backoff and reconnects until containerd takes it (a restart of minutes is survived), and the rest wait behind
/// it, so order holds (a lost or reordered exit event leaves a container unstoppable).
/// </summary>
public sealed partial class EventPublisher : IEventSink, IAsyncDisposable
{
    private readonly Channel<Envelope> _queue;
    private readonly EventPublisherOptions _options;
    private readonly string _address;
    private readonly string _namespace;
    private readonly ILogger _logger;
    private readonly Func<string, CancellationToken, Task<TtrpcClient>> _connect;
    private readonly Task _forwarder;
    private TtrpcClient? _client;
    private EventsApi.EventsClient? _events;

    public EventPublisher(
        string ttrpcAddress, string ns, ILogger logger, Func<string, CancellationToken, Task<TtrpcClient>>? connect = null, EventPublisherOptions? options = null)
    {
        _options = options ?? new EventPublisherOptions();
        _queue = Channel.CreateBounded<Envelope>(new BoundedChannelOptions(_options.Capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        _address = ttrpcAddress;
        _namespace = ns;
        _logger = logger;
        _connect = connect ?? ((path, ct) => TtrpcClient.ConnectUnixAsync(path, ct));
        _forwarder = Task.Run(ForwardAsync);
    }

    public void Publish(string topic, IMessage message)
    {
        var envelope = new Envelope
        {
            Timestamp = Timestamp.FromDateTime(DateTime.UtcNow),
            Namespace = _namespace,
            Topic = topic,
            Event = new Any { TypeUrl = message.Descriptor.FullName, Value = message.ToByteString() },
        };
        if (!_queue.Writer.TryWrite(envelope))
        {
            LogDropped(_logger, topic);
        }
    }

    /// <summary>Stops taking events and waits (bounded) for the queued ones to go out.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _forwarder.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_client is not null)
        {
            await _client.DisposeAsync();
        }
    }

    private async Task ForwardAsync()
    {
        await foreach (var envelope in _queue.Reader.ReadAllAsync())
        {
            var since = System.Diagnostics.Stopwatch.StartNew();
            var delay = _options.FirstRetryDelay;
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    if (_client is null)
                    {
                        _client = await _connect(_address, CancellationToken.None).WaitAsync(_options.CallTimeout);
                        _events = new EventsApi.EventsClient(new TtrpcCallInvoker(_client));
                    }

                    await _events!.ForwardAsync(new ForwardRequest { Envelope = envelope }, deadline: DateTime.UtcNow + _options.CallTimeout);
                    LogPublished(_logger, envelope.Topic);
                    break;
                }
                catch (Exception e) when (since.Elapsed < _options.GiveUpAfter)
                {
                    LogRetry(_logger, envelope.Topic, attempt, e.Message);
                    await ResetClientAsync();
                    await Task.Delay(delay);
                    delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxRetryDelay.Ticks));
                }
                catch (Exception e)
                {
                    LogLost(_logger, envelope.Topic, e.Message);
                    await ResetClientAsync();
                    break;
                }
            }
        }
    }

    private async Task ResetClientAsync()
    {
        if (_client is not null)
        {
            // Bounded: a half-dead connection must not stall every event behind it.
            var closing = _client.DisposeAsync().AsTask();
            _client = null;
            _events = null;
            await closing.WaitAsync(_options.CallTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "event {Topic} published")]
    private static partial void LogPublished(ILogger logger, string topic);

    [LoggerMessage(Level = LogLevel.Warning, Message = "publishing event {Topic} failed (attempt {Attempt}): {Reason}")]
    private static partial void LogRetry(ILogger logger, string topic, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "event {Topic} lost after retries: {Reason}")]
    private static partial void LogLost(ILogger logger, string topic, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "event {Topic} dropped: publisher closed or its queue is full")]
    private static partial void LogDropped(ILogger logger, string topic);
}
