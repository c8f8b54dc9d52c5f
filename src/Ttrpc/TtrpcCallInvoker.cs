using Google.Protobuf;
using Grpc.Core;

namespace ShimV2.Ttrpc;

/// <summary>
/// Runs Grpc.Tools' generated clients over a <see cref="TtrpcClient"/>: a method's service and name become the
/// TTRPC request's, <see cref="CallOptions.Deadline"/> its <c>timeout_nano</c>, <see cref="CallOptions.Headers"/> its
/// metadata. Unary only: TTRPC streams are not implemented here. Failures are what <see cref="TtrpcClient"/> throws
/// (<see cref="TtrpcException"/> with the peer's code, <see cref="OperationCanceledException"/> when the token is
/// cancelled), not <see cref="RpcException"/>: the callers' error handling does not depend on which client they use.
/// </summary>
public sealed class TtrpcCallInvoker : CallInvoker
{
    public TtrpcCallInvoker(TtrpcClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        Client = client;
    }

    public TtrpcClient Client { get; }

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
        CallAsync(method, options, request, options.CancellationToken).GetAwaiter().GetResult();

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        ArgumentNullException.ThrowIfNull(method);
        // Disposing a gRPC call cancels it: the call's own source, linked to the caller's token, lets it.
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(options.CancellationToken);
        var response = RunAsync(method, options, request, cancel);
        return new AsyncUnaryCall<TResponse>(
            response,
            Task.FromResult(Metadata.Empty),
            () => StatusOf(response),
            () => Metadata.Empty,
            () => Cancel(cancel));
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
        throw Streaming(method);

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        throw Streaming(method);

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        throw Streaming(method);

    /// <summary>The TTRPC options for a gRPC call: its deadline as a timeout, its headers as metadata.</summary>
    /// <exception cref="TtrpcException">DeadlineExceeded: the deadline has already passed.</exception>
    /// <exception cref="NotSupportedException">A binary header: TTRPC metadata carries strings.</exception>
    internal static TtrpcCallOptions? OptionsOf(CallOptions options)
    {
        TimeSpan? timeout = null;
        if (options.Deadline is { } deadline && deadline != DateTime.MaxValue)
        {
            var left = deadline.ToUniversalTime() - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                // As a Go context that has expired: the call is not sent.
                throw new TtrpcException(TtrpcStatusCode.DeadlineExceeded, StatusMapping.DeadlineExceededMessage);
            }

            timeout = left;
        }

        List<KeyValuePair<string, string>>? metadata = null;
        if (options.Headers is { Count: > 0 } headers)
        {
            metadata = new(headers.Count);
            foreach (var entry in headers)
            {
                if (entry.IsBinary)
                {
                    throw new NotSupportedException($"ttrpc: metadata carries strings; the binary header {entry.Key} cannot be sent");
                }

                metadata.Add(new(entry.Key, entry.Value));
            }
        }

        return timeout is null && metadata is null ? null : new TtrpcCallOptions { Timeout = timeout, Metadata = metadata };
    }

    private static void Cancel(CancellationTokenSource cancel)
    {
        try
        {
            cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The call has completed: nothing is left to cancel.
        }
    }

    private static Status StatusOf(Task task) => task.Status switch
    {
        TaskStatus.RanToCompletion => Status.DefaultSuccess,
        TaskStatus.Canceled => Status.DefaultCancelled,
        TaskStatus.Faulted => task.Exception!.InnerException switch
        {
            TtrpcException e => new Status((StatusCode)(int)e.Code, e.Message),
            OperationCanceledException => Status.DefaultCancelled,
            var e => new Status(StatusCode.Unknown, e?.Message ?? "", e),
        },
        _ => throw new InvalidOperationException("ttrpc: the call has not completed yet"),
    };

    private static NotSupportedException Streaming(IMethod method) =>
        new($"ttrpc: {method.FullName} is a {method.Type} method; only unary calls are carried over TTRPC here");

    private async Task<TResponse> RunAsync<TRequest, TResponse>(
        Method<TRequest, TResponse> method, CallOptions options, TRequest request, CancellationTokenSource cancel)
        where TRequest : class
        where TResponse : class
    {
        try
        {
            return await CallAsync(method, options, request, cancel.Token);
        }
        finally
        {
            cancel.Dispose();
        }
    }

    private async Task<TResponse> CallAsync<TRequest, TResponse>(
        Method<TRequest, TResponse> method, CallOptions options, TRequest request, CancellationToken cancellationToken)
        where TRequest : class
        where TResponse : class
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(request);
        var ttrpcOptions = OptionsOf(options);

        var serialization = new PayloadSerializationContext();
        method.RequestMarshaller.ContextualSerializer(request, serialization);
        var payload = UnsafeByteOperations.UnsafeWrap(serialization.Payload);

        var (streamId, answer) = await Client.CallAsync(method.ServiceName, method.Name, payload, ttrpcOptions, cancellationToken);
        try
        {
            return method.ResponseMarshaller.ContextualDeserializer(new PayloadDeserializationContext(answer.Memory));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw StatusMapping.Malformed(streamId, e);
        }
    }
}
