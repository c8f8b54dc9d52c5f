// Typed client for csharp.agent.v1.Agent over TTRPC: the generated client, with the agent's deadline policy.
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.Agent.Protocol;

/// <summary>
/// Calls the guest agent. Thread-safe: calls are multiplexed on one TTRPC connection. With a
/// <see cref="CallTimeout"/>, every call that is not a wait by design gets it as its deadline (unless the caller
/// passes its own), so a hung guest fails calls with <see cref="AgentDeadlineException"/> instead of hanging them.
/// The long polls (WaitProcess, ReadStdout/ReadStderr, WriteStdin, GetOomEvent, GetLogRecords) end when the
/// connection does: when the VM dies or the sandbox stops. Failures are <see cref="TtrpcException"/>s.
/// </summary>
public sealed class AgentClient
{
    private readonly V1.Agent.AgentClient _unbounded;
    private readonly V1.Agent.AgentClient _bounded;

    public AgentClient(TtrpcClient connection, TimeSpan? callTimeout = null)
    {
        Connection = connection;
        CallTimeout = callTimeout;
        var invoker = new TtrpcCallInvoker(connection);
        _unbounded = new V1.Agent.AgentClient(invoker);
        _bounded = callTimeout is { } timeout ? new V1.Agent.AgentClient(new AgentDeadlineInvoker(invoker, timeout)) : _unbounded;
    }

    /// <summary>The TTRPC service name of the agent, as the guest serves it.</summary>
    public static string ServiceName => V1.Agent.Descriptor.FullName;

    public TtrpcClient Connection { get; }

    /// <summary>The deadline of each non-waiting call; null: none.</summary>
    public TimeSpan? CallTimeout { get; }

    public Task<CheckResponse> CheckAsync(CheckRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).CheckAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> CreateSandboxAsync(CreateSandboxRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).CreateSandboxAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> DestroySandboxAsync(DestroySandboxRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).DestroySandboxAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<CreateContainerResponse> CreateContainerAsync(CreateContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).CreateContainerAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> StartContainerAsync(StartContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).StartContainerAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> RemoveContainerAsync(RemoveContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).RemoveContainerAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<ExecProcessResponse> ExecProcessAsync(ExecProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).ExecProcessAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<WaitProcessResponse> WaitProcessAsync(WaitProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Waiting.WaitProcessAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> SignalProcessAsync(SignalProcessRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).SignalProcessAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<WriteStreamResponse> WriteStdinAsync(WriteStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Waiting.WriteStdinAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<ReadStreamResponse> ReadStdoutAsync(ReadStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Waiting.ReadStdoutAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<ReadStreamResponse> ReadStderrAsync(ReadStreamRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Waiting.ReadStderrAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> CloseStdinAsync(CloseStdinRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).CloseStdinAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> TtyWinResizeAsync(TtyWinResizeRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).TtyWinResizeAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> PauseContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).PauseContainerAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> ResumeContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).ResumeContainerAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<ListProcessesResponse> ListProcessesAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).ListProcessesAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<StatsContainerResponse> StatsContainerAsync(ContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).StatsContainerAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> UpdateContainerAsync(UpdateContainerRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).UpdateContainerAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Empty> OnlineCpuMemAsync(OnlineCpuMemRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).OnlineCpuMemAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<OomEvent> GetOomEventAsync(GetOomEventRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Waiting.GetOomEventAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<Interface> UpdateInterfaceAsync(Interface request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).UpdateInterfaceAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<UpdateRoutesResponse> UpdateRoutesAsync(UpdateRoutesRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Call(options).UpdateRoutesAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    public Task<LogRecords> GetLogRecordsAsync(GetLogRecordsRequest request, TtrpcCallOptions? options = null, CancellationToken cancellationToken = default) =>
        Waiting.GetLogRecordsAsync(request, AgentCallOptions.From(options, cancellationToken)).ResponseAsync;

    /// <summary>The client of a call that is not a wait: bounded by <see cref="CallTimeout"/> unless the caller set a timeout.</summary>
    private V1.Agent.AgentClient Call(TtrpcCallOptions? options) => options?.Timeout is null ? _bounded : _unbounded;

    /// <summary>The client of a call that may wait as long as its purpose needs (the caller's options and token bound it).</summary>
    private V1.Agent.AgentClient Waiting => _unbounded;
}

/// <summary>The guest agent did not answer a call within the agent deadline: the guest has stopped answering.</summary>
public sealed class AgentDeadlineException(string method, TimeSpan timeout, Exception? inner = null)
    : TtrpcException(TtrpcStatusCode.DeadlineExceeded, MessageFor(method, timeout), inner)
{
    public string Method { get; } = method;

    public static string MessageFor(string method, TimeSpan timeout) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"guest agent did not answer {method} within {timeout.TotalSeconds:0.###} s: the VM may be hung");
}
