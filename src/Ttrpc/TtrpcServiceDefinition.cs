using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace ShimV2.Ttrpc;

/// <summary>
/// A unary method's dispatch: parse the payload, run the handler, return the response message. The payload is
/// valid until the returned task completes.
/// </summary>
internal delegate Task<IMessage> UnaryMethodHandler(ByteString payload, TtrpcCallContext context);

/// <summary>A service's methods, built from its protobuf descriptor; register with <see cref="TtrpcServer"/>.</summary>
public sealed class TtrpcServiceDefinition
{
    internal TtrpcServiceDefinition(string serviceName, Dictionary<string, UnaryMethodHandler> methods)
    {
        ServiceName = serviceName;
        Methods = methods;
    }

    /// <summary>The descriptor's full name, e.g. <c>containerd.task.v2.Task</c>.</summary>
    public string ServiceName { get; }

    /// <summary>Names of the methods with a handler.</summary>
    public IReadOnlyCollection<string> MethodNames => Methods.Keys;

    internal Dictionary<string, UnaryMethodHandler> Methods { get; }

    public static Builder Create(ServiceDescriptor descriptor)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        return new Builder(descriptor);
    }

    public sealed class Builder
    {
        private readonly ServiceDescriptor _descriptor;
        private readonly Dictionary<string, UnaryMethodHandler> _methods = new(StringComparer.Ordinal);

        internal Builder(ServiceDescriptor descriptor) => _descriptor = descriptor;

        /// <summary>Adds a unary method handler.</summary>
        /// <exception cref="ArgumentException">
        /// The method is not in the descriptor, is streaming, was already added, or the CLR types do not match its
        /// input/output descriptors.
        /// </exception>
        public Builder AddUnary<TRequest, TResponse>(string methodName, Func<TRequest, TtrpcCallContext, Task<TResponse>> handler)
            where TRequest : class, IMessage<TRequest>
            where TResponse : class, IMessage<TResponse>
            => AddUnary(methodName, null, handler);

        /// <summary>
        /// Adds a unary method handler whose requests <paramref name="parse"/> reads instead of the protobuf parser.
        /// The payload it is given stays valid until the handler's task completes, so a large bytes field can be
        /// used where it lies (<see cref="UnsafeByteOperations.UnsafeWrap"/>) rather than copied.
        /// </summary>
        /// <exception cref="ArgumentException">As <see cref="AddUnary{TRequest, TResponse}(string, Func{TRequest, TtrpcCallContext, Task{TResponse}})"/>.</exception>
        public Builder AddUnary<TRequest, TResponse>(
            string methodName, Func<ReadOnlyMemory<byte>, TRequest>? parse, Func<TRequest, TtrpcCallContext, Task<TResponse>> handler)
            where TRequest : class, IMessage<TRequest>
            where TResponse : class, IMessage<TResponse>
        {
            ArgumentNullException.ThrowIfNull(methodName);
            ArgumentNullException.ThrowIfNull(handler);
            var method = _descriptor.FindMethodByName(methodName)
                ?? throw new ArgumentException($"service {_descriptor.FullName} has no method {methodName}", nameof(methodName));
            if (method.IsClientStreaming || method.IsServerStreaming)
            {
                throw new ArgumentException($"{_descriptor.FullName}/{methodName} is a streaming method", nameof(methodName));
            }

            if (method.InputType.ClrType != typeof(TRequest))
            {
                throw new ArgumentException(
                    $"{_descriptor.FullName}/{methodName} takes {method.InputType.FullName}, not {typeof(TRequest).FullName}",
                    nameof(handler));
            }

            if (method.OutputType.ClrType != typeof(TResponse))
            {
                throw new ArgumentException(
                    $"{_descriptor.FullName}/{methodName} returns {method.OutputType.FullName}, not {typeof(TResponse).FullName}",
                    nameof(handler));
            }

            if (_methods.ContainsKey(methodName))
            {
                throw new ArgumentException($"{_descriptor.FullName}/{methodName} already has a handler", nameof(methodName));
            }

            var parser = method.InputType.Parser;
            _methods.Add(methodName, async (payload, context) =>
            {
                var request = parse is null ? (TRequest)parser.ParseFrom(payload) : parse(payload.Memory);
                var response = await handler(request, context);
                return response ?? throw new TtrpcException(
                    TtrpcStatusCode.Internal, $"ttrpc: {_descriptor.FullName}/{methodName} returned no response");
            });
            return this;
        }

        public TtrpcServiceDefinition Build() => new(_descriptor.FullName, new Dictionary<string, UnaryMethodHandler>(_methods));
    }
}
