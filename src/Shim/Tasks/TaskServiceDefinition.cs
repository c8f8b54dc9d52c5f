using Containerd.Task.V2;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ShimV2.Hypervisor;
using ShimV2.Shim.Bundle;
using ShimV2.Shim.Sandbox;
using ShimV2.Ttrpc;
using TaskApi = Containerd.Task.V2.Task;

namespace ShimV2.Shim.Tasks;

/// <summary>
/// The thin TTRPC adapter for containerd.task.v2.Task: the generated service base, request → domain call → response.
/// Domain exceptions map to TTRPC status codes here, in one place (<see cref="Map"/>, given to the binder).
/// </summary>
public static class TaskServiceDefinition
{
    public static TtrpcServiceDefinition Create(TaskService service) =>
        new TtrpcServiceBinder(MapAtEdge).Bind(binder => TaskApi.BindService(binder, new Endpoint(service)));

    /// <summary>Maps domain errors (kinds) and the shim's other exceptions to status codes, here only.</summary>
    public static TtrpcException? Map(Exception e) => e switch
    {
        ShimException d => new TtrpcException(Errors.CodeOf(d.Kind), d.Message),
        TtrpcException t => t,
        BundleException => new TtrpcException(TtrpcStatusCode.InvalidArgument, e.Message),
        HypervisorConfigException => new TtrpcException(TtrpcStatusCode.InvalidArgument, e.Message),
        HypervisorException or SandboxException => new TtrpcException(TtrpcStatusCode.FailedPrecondition, e.Message),
        FormatException => new TtrpcException(TtrpcStatusCode.InvalidArgument, e.Message),
        ArgumentException => new TtrpcException(TtrpcStatusCode.InvalidArgument, e.Message),
        IOException or UnauthorizedAccessException => new TtrpcException(TtrpcStatusCode.Internal, e.Message),
        _ => null,
    };

    // Cancellation keeps the server's reading (the call's deadline or its connection); the rest is unknown.
    private static Exception MapAtEdge(Exception e, TtrpcCallContext call) =>
        e is OperationCanceledException ? e : Map(e) ?? e;

    private sealed class Endpoint(TaskService service) : TaskApi.TaskBase
    {
        public override Task<StateResponse> State(StateRequest request, ServerCallContext context) =>
            service.StateAsync(request);

        public override Task<CreateTaskResponse> Create(CreateTaskRequest request, ServerCallContext context) =>
            service.CreateAsync(request, context.CancellationToken);

        public override Task<StartResponse> Start(StartRequest request, ServerCallContext context) =>
            service.StartAsync(request, context.CancellationToken);

        public override Task<DeleteResponse> Delete(DeleteRequest request, ServerCallContext context) =>
            service.DeleteAsync(request, context.CancellationToken);

        public override Task<PidsResponse> Pids(PidsRequest request, ServerCallContext context) =>
            service.PidsAsync(request, context.CancellationToken);

        public override Task<Empty> Pause(PauseRequest request, ServerCallContext context) =>
            service.PauseAsync(request, context.CancellationToken);

        public override Task<Empty> Resume(ResumeRequest request, ServerCallContext context) =>
            service.ResumeAsync(request, context.CancellationToken);

        public override Task<Empty> Checkpoint(CheckpointTaskRequest request, ServerCallContext context) =>
            service.CheckpointAsync(request);

        public override Task<Empty> Kill(KillRequest request, ServerCallContext context) =>
            service.KillAsync(request, context.CancellationToken);

        public override Task<Empty> Exec(ExecProcessRequest request, ServerCallContext context) =>
            service.ExecAsync(request);

        public override Task<Empty> ResizePty(ResizePtyRequest request, ServerCallContext context) =>
            service.ResizePtyAsync(request, context.CancellationToken);

        public override Task<Empty> CloseIO(CloseIORequest request, ServerCallContext context) =>
            service.CloseIOAsync(request, context.CancellationToken);

        public override Task<Empty> Update(UpdateTaskRequest request, ServerCallContext context) =>
            service.UpdateAsync(request, context.CancellationToken);

        public override Task<WaitResponse> Wait(WaitRequest request, ServerCallContext context) =>
            service.WaitAsync(request, context.CancellationToken);

        public override Task<StatsResponse> Stats(StatsRequest request, ServerCallContext context) =>
            service.StatsAsync(request, context.CancellationToken);

        public override Task<ConnectResponse> Connect(ConnectRequest request, ServerCallContext context) =>
            service.ConnectAsync(request);

        public override Task<Empty> Shutdown(ShutdownRequest request, ServerCallContext context) =>
            service.ShutdownAsync(request);
    }
}
