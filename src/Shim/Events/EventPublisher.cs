using System.Threading.Channels;
using Containerd.Services.Events.Ttrpc.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Events;

/// <summary>
/// One channel and one forwarder publish every event to containerd, in order, with retries and reconnects
/// (a lost exit event leaves a container unstoppable).
/// </summary>
public sealed partial class EventPublisher : IEventSink, IAsyncDisposable
{
    private const string Service = "containerd.services.events.ttrpc.v1.Events";
    private const int MaxAttempts = 5;
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);

    private readonly Channel<Envelope> _queue = Channel.CreateUnbounded<Envelope>(new UnboundedChannelOptions { SingleReader = true });
    private readonly string _address;
    private readonly string _namespace;
    private readonly ILogger _logger;
    private readonly Func<string, CancellationToken, Task<TtrpcClient>> _connect;
    private readonly Task _forwarder;
    private TtrpcClient? _client;

    public EventPublisher(string ttrpcAddress, string ns, ILogger logger, Func<string, CancellationToken, Task<TtrpcClient>>? connect = null)
    {
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
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    _client ??= await _connect(_address, CancellationToken.None).WaitAsync(CallTimeout);
                    await _client.CallAsync<ForwardRequest, Empty>(
                        Service, "Forward", new ForwardRequest { Envelope = envelope }, new TtrpcCallOptions { Timeout = CallTimeout });
                    LogPublished(_logger, envelope.Topic);
                    break;
                }
                catch (Exception e) when (attempt < MaxAttempts)
                {
                    LogRetry(_logger, envelope.Topic, attempt, e.Message);
                    await ResetClientAsync();
                    await Task.Delay(TimeSpan.FromMilliseconds(100 * attempt));
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
            await _client.DisposeAsync();
            _client = null;
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "event {Topic} published")]
    private static partial void LogPublished(ILogger logger, string topic);

    [LoggerMessage(Level = LogLevel.Warning, Message = "publishing event {Topic} failed (attempt {Attempt}): {Reason}")]
    private static partial void LogRetry(ILogger logger, string topic, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "event {Topic} lost after retries: {Reason}")]
    private static partial void LogLost(ILogger logger, string topic, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "event {Topic} dropped: publisher closed")]
    private static partial void LogDropped(ILogger logger, string topic);
}
