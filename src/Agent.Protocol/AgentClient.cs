// Typed client for csharp.agent.v1.Agent over TTRPC; one method per rpc in protos/agent/v1/agent.proto.
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.Agent.Protocol;

/// <summary>
/// Calls the guest agent. Thread-safe: calls are multiplexed on one TTRPC connection. With a
/// <see cref="CallTimeout"/>, every call that is not a wait by design gets it as its deadline (unless the caller
/// passes its own), so a hung guest fails calls with <see cref="AgentDeadlineException"/> instead of hanging them.
/// The long polls (WaitProcess, ReadStdout/ReadStderr, WriteStdin, GetOomEvent, GetLogRecords) end when the
/// connection does: when the VM dies or the sandbox stops.
/// </summary>
public sealed class AgentClient(TtrpcClient connection, TimeSpan? callTimeout = null)
{
    /// <summary>The TTRPC service name of the agent, as the guest serves it.</summary>
    public const string ServiceName = "csharp.agent.v1.Agent";

    public TtrpcClient Connection { get; } = connection;

    /// <summary>The deadline of each non-waiting call; null: none.</summary>
    public TimeSpan? CallTimeout { get; } = callTimeout;

    public Task<CheckResponse> CheckAsync(CheckRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<CheckRequest, CheckResponse>("Check", request, options, cancellationToken);

    public Task<Empty> CreateSandboxAsync(CreateSandboxRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<CreateSandboxRequest, Empty>("CreateSandbox", request, options, cancellationToken);

    public Task<Empty> DestroySandboxAsync(DestroySandboxRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<DestroySandboxRequest, Empty>("DestroySandbox", request, options, cancellationToken);

    public Task<CreateContainerResponse> CreateContainerAsync(CreateContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<CreateContainerRequest, CreateContainerResponse>("CreateContainer", request, options, cancellationToken);

    public Task<Empty> StartContainerAsync(StartContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<StartContainerRequest, Empty>("StartContainer", request, options, cancellationToken);

    public Task<Empty> RemoveContainerAsync(RemoveContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<RemoveContainerRequest, Empty>("RemoveContainer", request, options, cancellationToken);

    public Task<ExecProcessResponse> ExecProcessAsync(ExecProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<ExecProcessRequest, ExecProcessResponse>("ExecProcess", request, options, cancellationToken);

    public Task<WaitProcessResponse> WaitProcessAsync(WaitProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        WaitAsync<WaitProcessRequest, WaitProcessResponse>("WaitProcess", request, options, cancellationToken);

    public Task<Empty> SignalProcessAsync(SignalProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<SignalProcessRequest, Empty>("SignalProcess", request, options, cancellationToken);

    public Task<WriteStreamResponse> WriteStdinAsync(WriteStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        WaitAsync<WriteStreamRequest, WriteStreamResponse>("WriteStdin", request, options, cancellationToken);

    public Task<ReadStreamResponse> ReadStdoutAsync(ReadStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        WaitAsync<ReadStreamRequest, ReadStreamResponse>("ReadStdout", request, options, cancellationToken);

    public Task<ReadStreamResponse> ReadStderrAsync(ReadStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        WaitAsync<ReadStreamRequest, ReadStreamResponse>("ReadStderr", request, options, cancellationToken);

    public Task<Empty> CloseStdinAsync(CloseStdinRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<CloseStdinRequest, Empty>("CloseStdin", request, options, cancellationToken);

    public Task<Empty> TtyWinResizeAsync(TtyWinResizeRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<TtyWinResizeRequest, Empty>("TtyWinResize", request, options, cancellationToken);

    public Task<Empty> PauseContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<ContainerRequest, Empty>("PauseContainer", request, options, cancellationToken);

    public Task<Empty> ResumeContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<ContainerRequest, Empty>("ResumeContainer", request, options, cancellationToken);

    public Task<ListProcessesResponse> ListProcessesAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<ContainerRequest, ListProcessesResponse>("ListProcesses", request, options, cancellationToken);

    public Task<StatsContainerResponse> StatsContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<ContainerRequest, StatsContainerResponse>("StatsContainer", request, options, cancellationToken);

    public Task<Empty> UpdateContainerAsync(UpdateContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<UpdateContainerRequest, Empty>("UpdateContainer", request, options, cancellationToken);

    public Task<Empty> OnlineCpuMemAsync(OnlineCpuMemRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<OnlineCpuMemRequest, Empty>("OnlineCpuMem", request, options, cancellationToken);

    public Task<OomEvent> GetOomEventAsync(GetOomEventRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        WaitAsync<GetOomEventRequest, OomEvent>("GetOomEvent", request, options, cancellationToken);

    public Task<Interface> UpdateInterfaceAsync(Interface request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<Interface, Interface>("UpdateInterface", request, options, cancellationToken);

    public Task<UpdateRoutesResponse> UpdateRoutesAsync(UpdateRoutesRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        CallAsync<UpdateRoutesRequest, UpdateRoutesResponse>("UpdateRoutes", request, options, cancellationToken);

    public Task<LogRecords> GetLogRecordsAsync(GetLogRecordsRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        WaitAsync<GetLogRecordsRequest, LogRecords>("GetLogRecords", request, options, cancellationToken);

    /// <summary>A call that may wait as long as its purpose needs (the caller's options and token bound it).</summary>
    private Task<TResponse> WaitAsync<TRequest, TResponse>(string method, TRequest request, TtrpcCallOptions? options, CancellationToken cancellationToken)
        where TRequest : Google.Protobuf.IMessage
        where TResponse : Google.Protobuf.IMessage<TResponse>, new() =>
        Connection.CallAsync<TRequest, TResponse>(ServiceName, method, request, options, cancellationToken);

    private async Task<TResponse> CallAsync<TRequest, TResponse>(string method, TRequest request, TtrpcCallOptions? options, CancellationToken cancellationToken)
        where TRequest : Google.Protobuf.IMessage
        where TResponse : Google.Protobuf.IMessage<TResponse>, new()
    {
        if (CallTimeout is not { } timeout || options?.Timeout is not null)
        {
            return await Connection.CallAsync<TRequest, TResponse>(ServiceName, method, request, options, cancellationToken);
        }

        var bounded = new TtrpcCallOptions { Timeout = timeout, Metadata = options?.Metadata };
        try
        {
            return await Connection.CallAsync<TRequest, TResponse>(ServiceName, method, request, bounded, cancellationToken);
        }
        catch (TtrpcException e) when (e.Code == TtrpcStatusCode.DeadlineExceeded)
        {
            throw new AgentDeadlineException(method, timeout, e);
        }
    }
}

/// <summary>The guest agent did not answer a call within the agent deadline: the guest has stopped answering.</summary>
public sealed class AgentDeadlineException(string method, TimeSpan timeout, Exception? inner = null)
    : TtrpcException(TtrpcStatusCode.DeadlineExceeded, MessageFor(method, timeout), inner)
{
    public string Method { get; } = method;

    public static string MessageFor(string method, TimeSpan timeout) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"guest agent did not answer {method} within {timeout.TotalSeconds:0.###} s: the VM may be hung");
}
