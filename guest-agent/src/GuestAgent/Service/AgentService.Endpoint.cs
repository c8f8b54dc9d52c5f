using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;
using AgentApi = ShimV2.Agent.Protocol.V1.Agent;

namespace ShimV2.GuestAgent.Service;

internal sealed partial class AgentService
{
    /// <summary>
    /// The generated csharp.agent.v1.Agent base, answered by the service: one line per rpc. Errors are mapped by
    /// <see cref="AgentException.ToWire"/>, where the service is bound.
    /// </summary>
    private sealed class Endpoint(AgentService service) : AgentApi.AgentBase
    {
        public override Task<CheckResponse> Check(CheckRequest request, ServerCallContext context) =>
            service.CheckAsync(request, context.CancellationToken);

        public override Task<Empty> CreateSandbox(CreateSandboxRequest request, ServerCallContext context) =>
            service.CreateSandboxAsync(request, context.CancellationToken);

        public override Task<Empty> DestroySandbox(DestroySandboxRequest request, ServerCallContext context) =>
            service.DestroySandboxAsync(request, context.CancellationToken);

        public override Task<CreateContainerResponse> CreateContainer(CreateContainerRequest request, ServerCallContext context) =>
            service.CreateContainerAsync(request, context.CancellationToken);

        public override Task<Empty> StartContainer(StartContainerRequest request, ServerCallContext context) =>
            service.StartContainerAsync(request, context.CancellationToken);

        public override Task<Empty> RemoveContainer(RemoveContainerRequest request, ServerCallContext context) =>
            service.RemoveContainerAsync(request, context.CancellationToken);

        public override Task<ExecProcessResponse> ExecProcess(ExecProcessRequest request, ServerCallContext context) =>
            service.ExecProcessAsync(request, context.CancellationToken);

        public override Task<WaitProcessResponse> WaitProcess(WaitProcessRequest request, ServerCallContext context) =>
            service.WaitProcessAsync(request, context.CancellationToken);

        public override Task<Empty> SignalProcess(SignalProcessRequest request, ServerCallContext context) =>
            service.SignalProcessAsync(request, context.CancellationToken);

        public override Task<WriteStreamResponse> WriteStdin(WriteStreamRequest request, ServerCallContext context) =>
            service.WriteStdinAsync(request, context.CancellationToken);

        public override Task<ReadStreamResponse> ReadStdout(ReadStreamRequest request, ServerCallContext context) =>
            service.ReadOutputAsync(request, stderr: false, context.Ttrpc());

        public override Task<ReadStreamResponse> ReadStderr(ReadStreamRequest request, ServerCallContext context) =>
            service.ReadOutputAsync(request, stderr: true, context.Ttrpc());

        public override Task<Empty> CloseStdin(CloseStdinRequest request, ServerCallContext context) =>
            service.CloseStdinAsync(request, context.CancellationToken);

        public override Task<Empty> TtyWinResize(TtyWinResizeRequest request, ServerCallContext context) =>
            service.TtyWinResizeAsync(request, context.CancellationToken);

        public override Task<Empty> PauseContainer(ContainerRequest request, ServerCallContext context) =>
            service.SetPausedAsync(request, paused: true, context.CancellationToken);

        public override Task<Empty> ResumeContainer(ContainerRequest request, ServerCallContext context) =>
            service.SetPausedAsync(request, paused: false, context.CancellationToken);

        public override Task<ListProcessesResponse> ListProcesses(ContainerRequest request, ServerCallContext context) =>
            service.ListProcessesAsync(request, context.CancellationToken);

        public override Task<StatsContainerResponse> StatsContainer(ContainerRequest request, ServerCallContext context) =>
            service.StatsContainerAsync(request, context.CancellationToken);

        public override Task<Empty> UpdateContainer(UpdateContainerRequest request, ServerCallContext context) =>
            service.UpdateContainerAsync(request, context.CancellationToken);

        public override Task<Empty> OnlineCpuMem(OnlineCpuMemRequest request, ServerCallContext context) =>
            service.OnlineCpuMemAsync(request, context.CancellationToken);

        public override Task<OomEvent> GetOomEvent(GetOomEventRequest request, ServerCallContext context) =>
            service.GetOomEventAsync(request, context.CancellationToken);

        public override Task<Interface> UpdateInterface(Interface request, ServerCallContext context) =>
            service.UpdateInterfaceAsync(request, context.CancellationToken);

        public override Task<UpdateRoutesResponse> UpdateRoutes(UpdateRoutesRequest request, ServerCallContext context) =>
            service.UpdateRoutesAsync(request, context.CancellationToken);

        public override Task<LogRecords> GetLogRecords(GetLogRecordsRequest request, ServerCallContext context) =>
            service.GetLogRecordsAsync(request, context.CancellationToken);
    }
}
