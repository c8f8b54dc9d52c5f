// Typed client for csharp.agent.v1.Agent over TTRPC; one method per rpc in protos/agent/v1/agent.proto.
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.Agent.Protocol;

/// <summary>Calls the guest agent. Thread-safe: calls are multiplexed on one TTRPC connection.</summary>
public sealed class AgentClient(TtrpcClient connection)
{
    /// <summary>The TTRPC service name of the agent, as the guest serves it.</summary>
    public const string ServiceName = "csharp.agent.v1.Agent";

    public TtrpcClient Connection { get; } = connection;

    public Task<CheckResponse> CheckAsync(CheckRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<CheckRequest, CheckResponse>(ServiceName, "Check", request, options, cancellationToken);

    public Task<Empty> CreateSandboxAsync(CreateSandboxRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<CreateSandboxRequest, Empty>(ServiceName, "CreateSandbox", request, options, cancellationToken);

    public Task<Empty> DestroySandboxAsync(DestroySandboxRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<DestroySandboxRequest, Empty>(ServiceName, "DestroySandbox", request, options, cancellationToken);

    public Task<CreateContainerResponse> CreateContainerAsync(CreateContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<CreateContainerRequest, CreateContainerResponse>(ServiceName, "CreateContainer", request, options, cancellationToken);

    public Task<Empty> StartContainerAsync(StartContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<StartContainerRequest, Empty>(ServiceName, "StartContainer", request, options, cancellationToken);

    public Task<Empty> RemoveContainerAsync(RemoveContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<RemoveContainerRequest, Empty>(ServiceName, "RemoveContainer", request, options, cancellationToken);

    public Task<ExecProcessResponse> ExecProcessAsync(ExecProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<ExecProcessRequest, ExecProcessResponse>(ServiceName, "ExecProcess", request, options, cancellationToken);

    public Task<WaitProcessResponse> WaitProcessAsync(WaitProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<WaitProcessRequest, WaitProcessResponse>(ServiceName, "WaitProcess", request, options, cancellationToken);

    public Task<Empty> SignalProcessAsync(SignalProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<SignalProcessRequest, Empty>(ServiceName, "SignalProcess", request, options, cancellationToken);

    public Task<WriteStreamResponse> WriteStdinAsync(WriteStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<WriteStreamRequest, WriteStreamResponse>(ServiceName, "WriteStdin", request, options, cancellationToken);

    public Task<ReadStreamResponse> ReadStdoutAsync(ReadStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<ReadStreamRequest, ReadStreamResponse>(ServiceName, "ReadStdout", request, options, cancellationToken);

    public Task<ReadStreamResponse> ReadStderrAsync(ReadStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<ReadStreamRequest, ReadStreamResponse>(ServiceName, "ReadStderr", request, options, cancellationToken);

    public Task<Empty> CloseStdinAsync(CloseStdinRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<CloseStdinRequest, Empty>(ServiceName, "CloseStdin", request, options, cancellationToken);

    public Task<Empty> TtyWinResizeAsync(TtyWinResizeRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<TtyWinResizeRequest, Empty>(ServiceName, "TtyWinResize", request, options, cancellationToken);

    public Task<Empty> PauseContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<ContainerRequest, Empty>(ServiceName, "PauseContainer", request, options, cancellationToken);

    public Task<Empty> ResumeContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<ContainerRequest, Empty>(ServiceName, "ResumeContainer", request, options, cancellationToken);

    public Task<ListProcessesResponse> ListProcessesAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<ContainerRequest, ListProcessesResponse>(ServiceName, "ListProcesses", request, options, cancellationToken);

    public Task<StatsContainerResponse> StatsContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<ContainerRequest, StatsContainerResponse>(ServiceName, "StatsContainer", request, options, cancellationToken);

    public Task<Empty> UpdateContainerAsync(UpdateContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<UpdateContainerRequest, Empty>(ServiceName, "UpdateContainer", request, options, cancellationToken);

    public Task<Empty> OnlineCpuMemAsync(OnlineCpuMemRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<OnlineCpuMemRequest, Empty>(ServiceName, "OnlineCpuMem", request, options, cancellationToken);

    public Task<OomEvent> GetOomEventAsync(GetOomEventRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<GetOomEventRequest, OomEvent>(ServiceName, "GetOomEvent", request, options, cancellationToken);

    public Task<Interface> UpdateInterfaceAsync(Interface request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<Interface, Interface>(ServiceName, "UpdateInterface", request, options, cancellationToken);

    public Task<UpdateRoutesResponse> UpdateRoutesAsync(UpdateRoutesRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<UpdateRoutesRequest, UpdateRoutesResponse>(ServiceName, "UpdateRoutes", request, options, cancellationToken);

    public Task<LogRecords> GetLogRecordsAsync(GetLogRecordsRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Connection.CallAsync<GetLogRecordsRequest, LogRecords>(ServiceName, "GetLogRecords", request, options, cancellationToken);
}
