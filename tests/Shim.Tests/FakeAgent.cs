using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Tests;

/// <summary>A scripted guest agent served over real TTRPC: the unit seam under the task service.</summary>
internal sealed class FakeAgent(bool serveLogRecords = true)
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
    public void Oom(string containerId, uint status = 137)
    {
        OomEvents.Writer.TryWrite(containerId);
        Process(containerId).End(status, oom: true);
    }

    /// <summary>A hung guest: ExecProcess and SignalProcess are taken and never answered.</summary>
    public bool Hung { get; set; }

    private async Task HangIfHungAsync(TtrpcCallContext context)
    {
        if (Hung)
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }
    }

    public GuestProcess Process(string containerId, string execId = "") => Processes[$"{containerId}/{execId}"];

    public TtrpcServiceDefinition Definition()
    {
        var builder = Builder();
        if (serveLogRecords)
        {
            builder.AddUnary<GetLogRecordsRequest, LogRecords>("GetLogRecords", GetLogRecordsAsync);
        }

        return builder.Build();
    }

    private async Task<LogRecords> GetLogRecordsAsync(GetLogRecordsRequest request, TtrpcCallContext context)
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

            await added.WaitAsync(context.CancellationToken);
        }
    }

    private TtrpcServiceDefinition.Builder Builder() =>
        TtrpcServiceDefinition.Create(AgentReflection.Descriptor.Services[0])
            .AddUnary<CheckRequest, CheckResponse>("Check", (r, c) => Task.FromResult(new CheckResponse()))
            .AddUnary<CreateContainerRequest, CreateContainerResponse>("CreateContainer", async (r, c) =>
            {
                Calls.Enqueue($"create {r.ContainerId}");
                await HangIfHungAsync(c);
                var p = Add(r.ContainerId, string.Empty);
                return new CreateContainerResponse { Pid = p.Pid };
            })
            .AddUnary<GetOomEventRequest, OomEvent>("GetOomEvent", async (r, c) =>
                new OomEvent { ContainerId = await OomEvents.Reader.ReadAsync(c.CancellationToken) })
            .AddUnary<StartContainerRequest, Empty>("StartContainer", (r, c) =>
            {
                Calls.Enqueue($"start {r.ContainerId}");
                return Task.FromResult(new Empty());
            })
            .AddUnary<Agent.Protocol.V1.ExecProcessRequest, ExecProcessResponse>("ExecProcess", async (r, c) =>
            {
                Calls.Enqueue($"exec {r.ContainerId}/{r.ExecId} {r.ProcessJson.ToStringUtf8()}");
                await HangIfHungAsync(c);
                var p = Add(r.ContainerId, r.ExecId);
                return new ExecProcessResponse { Pid = p.Pid };
            })
            .AddUnary<WaitProcessRequest, WaitProcessResponse>("WaitProcess", async (r, c) =>
            {
                var p = Get(r.ContainerId, r.ExecId);
                var (status, oom) = await p.Exit.Task;
                return new WaitProcessResponse { ExitStatus = status, Pid = p.Pid, OomKilled = oom };
            })
            .AddUnary<SignalProcessRequest, Empty>("SignalProcess", async (r, c) =>
            {
                Calls.Enqueue($"signal {r.ContainerId}/{r.ExecId} {r.Signal} all={r.All}");
                await HangIfHungAsync(c);
                var targets = r.All
                    ? Processes.Values.Where(p => p.ContainerId == r.ContainerId)
                    : [Get(r.ContainerId, r.ExecId)];
                foreach (var p in targets)
                {
                    p.End(128 + r.Signal);
                }

                return new Empty();
            })
            .AddUnary<RemoveContainerRequest, Empty>("RemoveContainer", (r, c) =>
            {
                Calls.Enqueue($"remove {r.ContainerId}");
                Get(r.ContainerId, string.Empty).End(137);
                return Task.FromResult(new Empty());
            })
            .AddUnary<ReadStreamRequest, ReadStreamResponse>("ReadStdout", async (r, c) =>
            {
                var p = Get(r.ContainerId, r.ExecId);
                var data = await p.Stdout.Reader.WaitToReadAsync(c.CancellationToken) && p.Stdout.Reader.TryRead(out var chunk) ? chunk : [];
                return new ReadStreamResponse { Data = ByteString.CopyFrom(data) };
            })
            .AddUnary<ReadStreamRequest, ReadStreamResponse>("ReadStderr", async (r, c) =>
            {
                await Get(r.ContainerId, r.ExecId).Exit.Task;
                return new ReadStreamResponse();
            })
            .AddUnary<WriteStreamRequest, WriteStreamResponse>("WriteStdin", (r, c) =>
            {
                Get(r.ContainerId, r.ExecId).Stdin.Write(r.Data.Span);
                return Task.FromResult(new WriteStreamResponse { Len = (uint)r.Data.Length });
            })
            .AddUnary<CloseStdinRequest, Empty>("CloseStdin", (r, c) =>
            {
                var p = Get(r.ContainerId, r.ExecId);
                p.StdinClosed.TrySetResult(p.Stdin.ToArray());
                return Task.FromResult(new Empty());
            })
            .AddUnary<ContainerRequest, Empty>("PauseContainer", (r, c) =>
            {
                Calls.Enqueue($"pause {r.ContainerId}");
                return Task.FromResult(new Empty());
            })
            .AddUnary<ContainerRequest, Empty>("ResumeContainer", (r, c) =>
            {
                Calls.Enqueue($"resume {r.ContainerId}");
                return Task.FromResult(new Empty());
            })
            .AddUnary<ContainerRequest, ListProcessesResponse>("ListProcesses", (r, c) =>
            {
                var response = new ListProcessesResponse();
                response.Processes.AddRange(Processes.Values.Where(p => p.ContainerId == r.ContainerId && !p.Exit.Task.IsCompleted)
                    .Select(p => new ProcessEntry { Pid = p.Pid, ExecId = p.ExecId }));
                return Task.FromResult(response);
            })
            .AddUnary<ContainerRequest, StatsContainerResponse>("StatsContainer", (r, c) =>
                Task.FromResult(new StatsContainerResponse
                {
                    CgroupVersion = "v2",
                    CpuUsageUsec = 1500,
                    MemoryUsageBytes = 4096,
                    MemoryLimitBytes = 1 << 30,
                    PidsCurrent = 2,
                }))
            .AddUnary<UpdateContainerRequest, Empty>("UpdateContainer", (r, c) =>
            {
                Calls.Enqueue($"update {r.ContainerId} {r.ResourcesJson.ToStringUtf8()}");
                return Task.FromResult(new Empty());
            });

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
