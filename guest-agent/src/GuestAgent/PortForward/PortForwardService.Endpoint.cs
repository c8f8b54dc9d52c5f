using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.PortForward;

internal sealed partial class PortForwardService
{
    /// <summary>The generated csharp.agent.v1.PortForward base, answered by the service: one line per rpc.</summary>
    private sealed class Endpoint(PortForwardService service) : Agent.Protocol.V1.PortForward.PortForwardBase
    {
        public override Task<Listeners> WatchListeners(WatchListenersRequest request, ServerCallContext context) =>
            service.WatchListenersAsync(request, context.CancellationToken);

        public override Task<PortConnectResponse> Connect(PortConnectRequest request, ServerCallContext context) =>
            service.ConnectAsync(request, context.CancellationToken);

        public override Task<PortReadResponse> Read(PortReadRequest request, ServerCallContext context) =>
            service.ReadAsync(request, context.Ttrpc());

        public override Task<Empty> Write(PortWriteRequest request, ServerCallContext context) =>
            service.WriteAsync(request, context.CancellationToken);

        public override Task<Empty> CloseWrite(PortConnectionRequest request, ServerCallContext context) =>
            Task.FromResult(service.CloseWrite(request));

        public override Task<Empty> Close(PortConnectionRequest request, ServerCallContext context) =>
            Task.FromResult(service.Close(request));
    }
}
