using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using Grpc.Core;
using ShimV2.Ttrpc;
using AgentApi = ShimV2.Agent.Protocol.V1.Agent;

namespace ShimV2.Shim.Tests;

/// <summary>A scripted guest agent served over real TTRPC: the unit seam under the task service.</summary>
internal sealed class FakeAgent(bool serveLogRecords = true) : AgentApi.AgentBase
{
    private readonly Lock _logLock = new();
    private readonly List<LogRecord> _log = [];
    private TaskCompletionSource _logAdded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _nextPid = 100;

    /// <summary>Every GetLogRecords request, in order.</summary>
    public ConcurrentQueue<GetLogRecordsRequest> LogRequests { get; } = new();

    /// <summary>What GetLogRecords reports as dropped_total.</summary>
    public ulong LogDroppedTotal { get; set; }

    /// <summary>Answers include the records already acknowledged (as a lost answer comes again).</summary>
    public bool IgnoreLogAcknowledgements { get; set; }

    /// <summary>Logs a record in the "guest": numbered 1, 2, ... as the agent does.</summary>
    public void AddLogRecord(LogRecord record)
    {
        lock (_logLock)
        {
            record.Sequence = (ulong)_log.Count + 1;
            _log.Add(record);
            _logAdded.TrySetResult();
            _logAdded = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public ConcurrentDictionary<string, GuestProcess> Processes { get; } = new(StringComparer.Ordinal);

    public ConcurrentQueue<string> Calls { get; } = new();

    /// <summary>As a real guest: an init's end kills the rest of its pid namespace (its execs) first.</summary>
    public bool InitTakesExecs { get; set; }

    /// <summary>The guest's OOM queue, as the agent fills it when a container's cgroup reports an OOM.</summary>
    public Channel<string> OomEvents { get; } = Channel.CreateUnbounded<string>();

    /// <summary>An OOM as the guest sees it: queued when it happens, then the process dies of it.</summary>
    public void Oom(string containerId, string execId = "", uint status = 137)
    {
        OomEvents.Writer.TryWrite(containerId);
        Process(containerId, execId).End(status, oom: true);
    }

    /// <summary>A hung guest: ExecProcess and SignalProcess are taken and never answered.</summary>
    public bool Hung { get; set; }

    private async Task HangIfHungAsync(ServerCallContext context)
    {
        if (Hung)
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }
    }

    public GuestProcess Process(string containerId, string execId = "") => Processes[$"{containerId}/{execId}"];

    /// <summary>The agent as the shim meets it; without log records GetLogRecords is unimplemented, as an old guest's.</summary>
    public TtrpcServiceDefinition Definition() => new TtrpcServiceBinder().Bind(binder => AgentApi.BindService(binder, this));

    private async Task<LogRecords> GetLogRecordsAsync(GetLogRecordsRequest request, CancellationToken cancellationToken)
    {
        LogRequests.Enqueue(request);
        while (true)
        {
            Task added;
            lock (_logLock)
            {
                if (request.NoWait || _log.Exists(r => r.Sequence > request.AfterSequence))
                {
                    var after = IgnoreLogAcknowledgements ? 0 : request.AfterSequence;
                    var answer = new LogRecords { DroppedTotal = LogDroppedTotal };
                    answer.Records.AddRange(_log.Where(r => r.Sequence > after));
                    return answer;
                }

                added = _logAdded.Task;
            }

            await added.WaitAsync(cancellationToken);
        }
    }

    // ---- the scripted answers: the generated csharp.agent.v1.Agent base ----

    public override Task<CheckResponse> Check(CheckRequest request, ServerCallContext context) =>
        Task.FromResult(new CheckResponse());

    public override async Task<CreateContainerResponse> CreateContainer(CreateContainerRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"create {request.ContainerId}");
        await HangIfHungAsync(context);
        var p = Add(request.ContainerId, string.Empty);
        return new CreateContainerResponse { Pid = p.Pid };
    }

    public override async Task<OomEvent> GetOomEvent(GetOomEventRequest request, ServerCallContext context) =>
        new OomEvent { ContainerId = await OomEvents.Reader.ReadAsync(context.CancellationToken) };

    public override Task<Empty> StartContainer(StartContainerRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"start {request.ContainerId}");
        return Task.FromResult(new Empty());
    }

    public override async Task<ExecProcessResponse> ExecProcess(Agent.Protocol.V1.ExecProcessRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"exec {request.ContainerId}/{request.ExecId} {request.ProcessJson.ToStringUtf8()}");
        await HangIfHungAsync(context);
        var p = Add(request.ContainerId, request.ExecId);
        return new ExecProcessResponse { Pid = p.Pid };
    }

    public override async Task<WaitProcessResponse> WaitProcess(WaitProcessRequest request, ServerCallContext context)
    {
        var p = Get(request.ContainerId, request.ExecId);
        var (status, oom) = await p.Exit.Task;
        return new WaitProcessResponse { ExitStatus = status, Pid = p.Pid, OomKilled = oom };
    }

    public override async Task<Empty> SignalProcess(SignalProcessRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"signal {request.ContainerId}/{request.ExecId} {request.Signal} all={request.All}");
        await HangIfHungAsync(context);
        var targets = request.All
            ? Processes.Values.Where(p => p.ContainerId == request.ContainerId)
            : [Get(request.ContainerId, request.ExecId)];
        foreach (var p in targets)
        {
            p.End(128 + request.Signal);
        }

        return new Empty();
    }

    public override Task<Empty> RemoveContainer(RemoveContainerRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"remove {request.ContainerId}");
        Get(request.ContainerId, string.Empty).End(137);
        return Task.FromResult(new Empty());
    }

    public override async Task<ReadStreamResponse> ReadStdout(ReadStreamRequest request, ServerCallContext context)
    {
        // As the real agent: several reads are in flight at once, each answer names its offset in the stream, and the
        // end of stream is an empty answer at the stream's length.
        var p = Get(request.ContainerId, request.ExecId);
        while (true)
        {
            lock (p)
            {
                if (p.Stdout.Reader.TryRead(out var chunk))
                {
                    var offset = p.StdoutOffset;
                    p.StdoutOffset += chunk.Length;
                    return new ReadStreamResponse { Data = ByteString.CopyFrom(chunk), Offset = (ulong)offset };
                }

                if (p.Stdout.Reader.Completion.IsCompleted)
                {
                    return new ReadStreamResponse { Offset = (ulong)p.StdoutOffset };
                }
            }

            await p.Stdout.Reader.WaitToReadAsync(context.CancellationToken);
        }
    }

    public override async Task<ReadStreamResponse> ReadStderr(ReadStreamRequest request, ServerCallContext context)
    {
        await Get(request.ContainerId, request.ExecId).Exit.Task;
        return new ReadStreamResponse();
    }

    public override Task<WriteStreamResponse> WriteStdin(WriteStreamRequest request, ServerCallContext context)
    {
        Get(request.ContainerId, request.ExecId).Stdin.Write(request.Data.Span);
        return Task.FromResult(new WriteStreamResponse { Len = (uint)request.Data.Length });
    }

    public override Task<Empty> CloseStdin(CloseStdinRequest request, ServerCallContext context)
    {
        var p = Get(request.ContainerId, request.ExecId);
        p.StdinClosed.TrySetResult(p.Stdin.ToArray());
        return Task.FromResult(new Empty());
    }

    public override Task<Empty> PauseContainer(ContainerRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"pause {request.ContainerId}");
        return Task.FromResult(new Empty());
    }

    public override Task<Empty> ResumeContainer(ContainerRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"resume {request.ContainerId}");
        return Task.FromResult(new Empty());
    }

    public override Task<ListProcessesResponse> ListProcesses(ContainerRequest request, ServerCallContext context)
    {
        var response = new ListProcessesResponse();
        response.Processes.AddRange(Processes.Values.Where(p => p.ContainerId == request.ContainerId && !p.Exit.Task.IsCompleted)
            .Select(p => new ProcessEntry { Pid = p.Pid, ExecId = p.ExecId }));
        return Task.FromResult(response);
    }

    public override Task<StatsContainerResponse> StatsContainer(ContainerRequest request, ServerCallContext context) =>
        Task.FromResult(new StatsContainerResponse
        {
            CgroupVersion = "v2",
            CpuUsageUsec = 1500,
            MemoryUsageBytes = 4096,
            MemoryLimitBytes = 1 << 30,
            PidsCurrent = 2,
        });

    public override Task<Empty> UpdateContainer(UpdateContainerRequest request, ServerCallContext context)
    {
        Calls.Enqueue($"update {request.ContainerId} {request.ResourcesJson.ToStringUtf8()}");
        return Task.FromResult(new Empty());
    }

    public override Task<LogRecords> GetLogRecords(GetLogRecordsRequest request, ServerCallContext context) =>
        serveLogRecords ? GetLogRecordsAsync(request, context.CancellationToken) : base.GetLogRecords(request, context);

    private GuestProcess Add(string containerId, string execId)
    {
        var p = new GuestProcess(containerId, execId, (uint)Interlocked.Increment(ref _nextPid));
        if (execId.Length == 0)
        {
            p.BeforeEnd = () =>
            {
                if (InitTakesExecs)
                {
                    foreach (var exec in Processes.Values.Where(e => e.ContainerId == containerId && e.ExecId.Length > 0))
                    {
                        exec.End(137);
                    }
                }
            };
        }

        if (!Processes.TryAdd($"{containerId}/{execId}", p))
        {
            throw new TtrpcException(TtrpcStatusCode.AlreadyExists, $"{containerId}/{execId} exists");
        }

        return p;
    }

    private GuestProcess Get(string containerId, string execId) =>
        Processes.TryGetValue($"{containerId}/{execId}", out var p)
            ? p
            : throw new TtrpcException(TtrpcStatusCode.NotFound, $"process {containerId}/{execId} not found");

    internal sealed class GuestProcess(string containerId, string execId, uint pid)
    {
        public string ContainerId { get; } = containerId;

        public string ExecId { get; } = execId;

        public uint Pid { get; } = pid;

        public TaskCompletionSource<(uint Status, bool Oom)> Exit { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Channel<byte[]> Stdout { get; } = Channel.CreateUnbounded<byte[]>();

        /// <summary>Bytes of stdout handed out so far (under the process's lock).</summary>
        public long StdoutOffset { get; set; }

        public MemoryStream Stdin { get; } = new();

        public TaskCompletionSource<byte[]> StdinClosed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private readonly Lock _endLock = new();
        private bool _ended;

        public Action? BeforeEnd { get; set; }

        /// <summary>The process writes to stdout and exits: output first, as a real pipe delivers it. False when it
        /// had already ended (nothing written).</summary>
        public bool End(uint status, string output = "", bool oom = false)
        {
            lock (_endLock)
            {
                if (_ended)
                {
                    return false;
                }

                _ended = true;
            }

            BeforeEnd?.Invoke();
            if (output.Length > 0)
            {
                Stdout.Writer.TryWrite(System.Text.Encoding.UTF8.GetBytes(output));
            }

            Stdout.Writer.TryComplete();
            Exit.TrySetResult((status, oom));
            return true;
        }
    }
}
