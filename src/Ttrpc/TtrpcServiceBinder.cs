using Google.Protobuf;
using Grpc.Core;

namespace ShimV2.Ttrpc;

/// <summary>
/// Turns a generated <c>BindService(ServiceBinderBase, impl)</c> into <see cref="TtrpcServiceDefinition"/>s for
/// <see cref="TtrpcServer"/>, which keeps its dispatch, limits and status mapping: a handler's exception is answered
/// as any other (an <see cref="RpcException"/> with its code). Unary methods only.
/// </summary>
public sealed class TtrpcServiceBinder : ServiceBinderBase
{
    private readonly Dictionary<string, Dictionary<string, UnaryMethodHandler>> _services = new(StringComparer.Ordinal);
    private readonly Dictionary<Type, Delegate> _parsers = [];
    private readonly Func<Exception, TtrpcCallContext, Exception>? _mapException;

    /// <param name="mapException">
    /// The service's own error edge: turns what a handler threw into what the server answers (a
    /// <see cref="TtrpcException"/> with the domain's code); null leaves exceptions to the server's mapping. An
    /// <see cref="RpcException"/> (the generated base's Unimplemented, say) is a status already: it is not mapped.
    /// </param>
    public TtrpcServiceBinder(Func<Exception, TtrpcCallContext, Exception>? mapException = null)
    {
        _mapException = mapException;
    }

    /// <summary>
    /// Requests of type <typeparamref name="TRequest"/> are read by <paramref name="parse"/> instead of the generated
    /// marshaller. The payload stays valid until the handler's task completes, so a large bytes field can be used
    /// where it lies (<see cref="UnsafeByteOperations.UnsafeWrap"/>) rather than copied. Set before binding.
    /// </summary>
    public TtrpcServiceBinder ParseWith<TRequest>(Func<ReadOnlyMemory<byte>, TRequest> parse)
        where TRequest : class
    {
        ArgumentNullException.ThrowIfNull(parse);
        _parsers[typeof(TRequest)] = parse;
        return this;
    }

    /// <summary>The services bound so far, one definition per service name.</summary>
    public IReadOnlyList<TtrpcServiceDefinition> Build() =>
        [.. _services.Select(s => new TtrpcServiceDefinition(s.Key, new Dictionary<string, UnaryMethodHandler>(s.Value, StringComparer.Ordinal)))];

    /// <summary>Binds with <paramref name="bind"/> (a generated <c>BindService</c>) and builds the one service it bound.</summary>
    public TtrpcServiceDefinition Bind(Action<ServiceBinderBase> bind)
    {
        ArgumentNullException.ThrowIfNull(bind);
        var before = _services.Keys.ToHashSet(StringComparer.Ordinal);
        bind(this);
        var bound = _services.Keys.Where(k => !before.Contains(k)).ToList();
        if (bound.Count != 1)
        {
            throw new ArgumentException($"ttrpc: expected one service to be bound, got {bound.Count}", nameof(bind));
        }

        return new TtrpcServiceDefinition(bound[0], new Dictionary<string, UnaryMethodHandler>(_services[bound[0]], StringComparer.Ordinal));
    }

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (handler is null)
        {
            // A generated BindService given no implementation: the method stays unimplemented.
            return;
        }

        if (!typeof(IMessage).IsAssignableFrom(typeof(TResponse)))
        {
            throw new ArgumentException(
                $"ttrpc: {method.FullName} returns {typeof(TResponse).FullName}, which is not a protobuf message", nameof(method));
        }

        var methods = _services.TryGetValue(method.ServiceName, out var existing)
            ? existing
            : _services[method.ServiceName] = new(StringComparer.Ordinal);
        if (methods.ContainsKey(method.Name))
        {
            throw new ArgumentException($"ttrpc: {method.FullName} already has a handler", nameof(method));
        }

        var parse = _parsers.TryGetValue(typeof(TRequest), out var p) ? (Func<ReadOnlyMemory<byte>, TRequest>)p : null;
        var deserialize = method.RequestMarshaller.ContextualDeserializer;
        var mapException = _mapException;
        var fullName = method.FullName;
        methods.Add(method.Name, async (payload, call) =>
        {
            var request = parse is null ? deserialize(new PayloadDeserializationContext(payload.Memory)) : parse(payload.Memory);
            TResponse response;
            try
            {
                response = await handler(request, new TtrpcServerCallContext(call));
            }
            catch (Exception e) when (mapException is not null && e is not RpcException)
            {
                var mapped = mapException(e, call);
                if (ReferenceEquals(mapped, e))
                {
                    throw;
                }

                throw mapped;
            }

            // The server serializes the message itself, after which OnCompleted callbacks may reuse what it wrapped.
            return response as IMessage
                ?? throw new TtrpcException(TtrpcStatusCode.Internal, $"ttrpc: {fullName} returned no response");
        });
    }

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
        throw Streaming(method);

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
        throw Streaming(method);

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
        throw Streaming(method);

    private static NotSupportedException Streaming(IMethod method) =>
        new($"ttrpc: {method.FullName} is a {method.Type} method; only unary methods are served over TTRPC here");
}
