using Containerd.Task.V2;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Hypervisor;
using ShimV2.Shim.Bundle;
using ShimV2.Shim.Sandbox;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Tasks;

/// <summary>
/// The thin TTRPC adapter for containerd.task.v2.Task: request → domain call → response. Domain exceptions map to
/// TTRPC status codes here, in one place.
/// </summary>
public static class TaskServiceDefinition
{
    public static TtrpcServiceDefinition Create(TaskService service) =>
        TtrpcServiceDefinition.Create(ShimReflection.Descriptor.Services[0])
            .AddUnary<StateRequest, StateResponse>("State", (r, c) => Guard(() => service.StateAsync(r)))
            .AddUnary<CreateTaskRequest, CreateTaskResponse>("Create", (r, c) => Guard(() => service.CreateAsync(r, c.CancellationToken)))
            .AddUnary<StartRequest, StartResponse>("Start", (r, c) => Guard(() => service.StartAsync(r, c.CancellationToken)))
            .AddUnary<DeleteRequest, DeleteResponse>("Delete", (r, c) => Guard(() => service.DeleteAsync(r, c.CancellationToken)))
            .AddUnary<PidsRequest, PidsResponse>("Pids", (r, c) => Guard(() => service.PidsAsync(r, c.CancellationToken)))
            .AddUnary<PauseRequest, Empty>("Pause", (r, c) => Guard(() => service.PauseAsync(r, c.CancellationToken)))
            .AddUnary<ResumeRequest, Empty>("Resume", (r, c) => Guard(() => service.ResumeAsync(r, c.CancellationToken)))
            .AddUnary<CheckpointTaskRequest, Empty>("Checkpoint", (r, c) => Guard(() => service.CheckpointAsync(r)))
            .AddUnary<KillRequest, Empty>("Kill", (r, c) => Guard(() => service.KillAsync(r, c.CancellationToken)))
            .AddUnary<ExecProcessRequest, Empty>("Exec", (r, c) => Guard(() => service.ExecAsync(r)))
            .AddUnary<ResizePtyRequest, Empty>("ResizePty", (r, c) => Guard(() => service.ResizePtyAsync(r, c.CancellationToken)))
            .AddUnary<CloseIORequest, Empty>("CloseIO", (r, c) => Guard(() => service.CloseIOAsync(r, c.CancellationToken)))
            .AddUnary<UpdateTaskRequest, Empty>("Update", (r, c) => Guard(() => service.UpdateAsync(r, c.CancellationToken)))
            .AddUnary<WaitRequest, WaitResponse>("Wait", (r, c) => Guard(() => service.WaitAsync(r, c.CancellationToken)))
            .AddUnary<StatsRequest, StatsResponse>("Stats", (r, c) => Guard(() => service.StatsAsync(r, c.CancellationToken)))
            .AddUnary<ConnectRequest, ConnectResponse>("Connect", (r, c) => Guard(() => service.ConnectAsync(r)))
            .AddUnary<ShutdownRequest, Empty>("Shutdown", (r, c) => Guard(() => service.ShutdownAsync(r)))
            .Build();

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

    private static async Task<T> Guard<T>(Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (Exception e) when (e is not OperationCanceledException && Map(e) is { } mapped && !ReferenceEquals(mapped, e))
        {
            throw mapped;
        }
    }
}
