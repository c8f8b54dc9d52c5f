using Grpc.Core;
using ShimV2.Ttrpc;

namespace ShimV2.Agent.Protocol;

/// <summary>
/// Gives every call without a deadline the agent deadline, and says a call that met it found the guest not answering
/// (<see cref="AgentDeadlineException"/>). Calls with their own deadline are passed on as they are.
/// </summary>
internal sealed class AgentDeadlineInvoker(CallInvoker inner, TimeSpan timeout) : CallInvoker
{
    public TimeSpan Timeout { get; } = timeout;

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        if (options.Deadline is not null)
        {
            return inner.BlockingUnaryCall(method, host, options, request);
        }

        try
        {
            return inner.BlockingUnaryCall(method, host, options.WithDeadline(DateTime.UtcNow + Timeout), request);
        }
        catch (TtrpcException e) when (e.Code == TtrpcStatusCode.DeadlineExceeded)
        {
            throw new AgentDeadlineException(method.Name, Timeout, e);
        }
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        if (options.Deadline is not null)
        {
            return inner.AsyncUnaryCall(method, host, options, request);
        }

        var call = inner.AsyncUnaryCall(method, host, options.WithDeadline(DateTime.UtcNow + Timeout), request);
        return new AsyncUnaryCall<TResponse>(
            MapAsync(call.ResponseAsync, method.Name), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
        inner.AsyncServerStreamingCall(method, host, options, request);

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        inner.AsyncClientStreamingCall(method, host, options);

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        inner.AsyncDuplexStreamingCall(method, host, options);

    private async Task<TResponse> MapAsync<TResponse>(Task<TResponse> response, string method)
    {
        try
        {
            return await response;
        }
        catch (TtrpcException e) when (e.Code == TtrpcStatusCode.DeadlineExceeded)
        {
            throw new AgentDeadlineException(method, Timeout, e);
        }
    }
}

/// <summary>The generated clients' options for a call made with <see cref="TtrpcCallOptions"/>.</summary>
internal static class AgentCallOptions
{
    public static CallOptions From(TtrpcCallOptions? options, CancellationToken cancellationToken)
    {
        DateTime? deadline = null;
        if (options?.Timeout is { } timeout && timeout != System.Threading.Timeout.InfiniteTimeSpan)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero, nameof(options));
            deadline = DateTime.UtcNow + timeout;
        }

        Metadata? headers = null;
        if (options?.Metadata is { Count: > 0 } metadata)
        {
            headers = [];
            foreach (var (key, value) in metadata)
            {
                headers.Add(key, value);
            }
        }

        return new CallOptions(headers, deadline, cancellationToken);
    }
}
