using System.Net.Sockets;
using Containerd.Services.Events.Ttrpc.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using Grpc.Core;
using ShimV2.Ttrpc;
using EventsApi = Containerd.Services.Events.Ttrpc.V1.Events;

namespace ShimV2.Shim.Tests;

/// <summary>containerd's events service as the shim's publisher meets it: a real TTRPC server that can be away.</summary>
internal sealed class FakeContainerdEvents : IAsyncDisposable
{
    private readonly TtrpcServer _server;
    private readonly Socket _listener;
    private readonly Task _serving;
    private readonly Lock _gate = new();
    private readonly List<(string Topic, IMessage Event, string? Snapshot)> _received = [];

    public FakeContainerdEvents(string directory)
    {
        SocketPath = Path.Combine(directory, "containerd.sock.ttrpc");
        _server = new TtrpcServer(
            [
                new TtrpcServiceBinder().Bind(binder => EventsApi.BindService(binder, new Endpoint(this))),
            ],
            NullLogger.Instance);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen();
        _serving = _server.ServeAsync(_listener);
    }

    public string SocketPath { get; }

    /// <summary>While true, containerd is down: no connection is taken and Forward fails.</summary>
    public bool Away { get; set; }

    /// <summary>Called as each event arrives, to capture what was true then (e.g. a process's output file).</summary>
    public Func<string, IMessage, string?>? Snapshot { get; set; }

    public List<(string Topic, IMessage Event, string? Snapshot)> Received
    {
        get
        {
            lock (_gate)
            {
                return [.. _received];
            }
        }
    }

    private readonly TaskCompletionSource _manyRefused = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _refused;

    /// <summary>Completes once 100 connections were refused while away (the publisher kept trying).</summary>
    public Task ManyRefused => _manyRefused.Task;

    public Task<TtrpcClient> ConnectAsync(string path, CancellationToken cancellationToken)
    {
        if (!Away)
        {
            return TtrpcClient.ConnectUnixAsync(SocketPath, cancellationToken);
        }

        if (Interlocked.Increment(ref _refused) >= 100)
        {
            _manyRefused.TrySetResult();
        }

        return Task.FromException<TtrpcClient>(new IOException("containerd is away"));
    }

    public async ValueTask DisposeAsync()
    {
        await _server.ShutdownAsync();
        _listener.Dispose();
        await _serving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private Empty Forward(ForwardRequest request)
    {
        if (Away)
        {
            throw new TtrpcException(TtrpcStatusCode.Unavailable, "containerd is away");
        }

        var message = Decode(request.Envelope.Event);
        string? snapshot;
        try
        {
            snapshot = Snapshot?.Invoke(request.Envelope.Topic, message);
        }
        catch (IOException e)
        {
            snapshot = "!" + e.Message;
        }

        lock (_gate)
        {
            _received.Add((request.Envelope.Topic, message, snapshot));
        }

        return new Empty();
    }

    private static IMessage Decode(Any any)
    {
        var descriptor = Containerd.Events.TaskReflection.Descriptor.MessageTypes.Single(t => t.FullName == any.TypeUrl);
        return descriptor.Parser.ParseFrom(any.Value);
    }

    /// <summary>The generated events service base, answered by the fake.</summary>
    private sealed class Endpoint(FakeContainerdEvents fake) : EventsApi.EventsBase
    {
        public override async Task<Empty> Forward(ForwardRequest request, ServerCallContext context)
        {
            await Task.Yield();
            return fake.Forward(request);
        }
    }
}
