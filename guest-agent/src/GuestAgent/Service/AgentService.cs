using System.Collections.Concurrent;
using System.Text;
using System.Threading.Channels;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent.Cgroups;
using ShimV2.GuestAgent.Containers;
using ShimV2.GuestAgent.Helper;
using ShimV2.GuestAgent.Hotplug;
using ShimV2.GuestAgent.Logging;
using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.Network;
using ShimV2.GuestAgent.Oci;
using ShimV2.GuestAgent.Stdio;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Service;

/// <summary>
/// csharp.agent.v1.Agent: the sandbox (share, hostname), its containers and their processes. Errors are
/// <see cref="AgentException"/>s with the status the shim sees (NotFound, FailedPrecondition, InvalidArgument, ...).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "One instance lives as long as the agent.")]
internal sealed partial class AgentService
{
    public const string Version = "0.1.0";

    /// <summary>Largest ReadStdout/ReadStderr answer: well under the 4 MiB TTRPC frame limit.</summary>
    private const int MaxReadChunk = OutputStream.MaxChunk;

    /// <summary>Most log records per GetLogRecords answer (each at most 4096 characters): far below a TTRPC frame.</summary>
    private const int MaxLogBatch = 128;

    private readonly AgentOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Container> _containers = new(StringComparer.Ordinal);

    /// <summary>Ids being created: a second CreateContainer for the same id is refused, not raced.</summary>
    private readonly ConcurrentDictionary<string, byte> _creating = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _sandboxGate = new(1, 1);
    private readonly Channel<string> _oomEvents = Channel.CreateUnbounded<string>();
    private readonly TaskCompletionSource _destroyed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CpuMemOnliner _onliner = new();
    private readonly Func<IReadOnlyList<string>> _transports;
    private readonly LogRecordQueue _logRecords;
    private string? _sandboxId;
    private string? _sharePath;

    public AgentService(AgentOptions options, ILogger logger, Func<IReadOnlyList<string>> transports, LogRecordQueue logRecords)
    {
        _options = options;
        _logger = logger;
        _transports = transports;
        _logRecords = logRecords;
    }

    /// <summary>One-time guest setup: hot-plugged memory comes online by itself.</summary>
    public void PrepareGuest()
    {
        if (!_onliner.EnableMemoryAutoOnline())
        {
            LogGuestWarning(_logger, "hot-plugged memory will not come online by itself (no memory/auto_online_blocks)");
        }
    }

    /// <summary>Completes once DestroySandbox ran: the VM may power off.</summary>
    public Task Destroyed => _destroyed.Task;

    public int ContainerCount => _containers.Count;

    /// <summary>The service as the TTRPC server runs it: the generated csharp.agent.v1.Agent bound to <see cref="Endpoint"/>.</summary>
    public TtrpcServiceDefinition Definition() =>
        new TtrpcServiceBinder(AgentException.ToWire)
            .ParseWith(WriteStreamParser.Parse)
            .Bind(binder => ShimV2.Agent.Protocol.V1.Agent.BindService(binder, new Endpoint(this)));

    // ---- sandbox -------------------------------------------------------------------------------------------

    public Task<CheckResponse> CheckAsync(CheckRequest request, CancellationToken ct)
    {
        var response = new CheckResponse
        {
            AgentVersion = Version,
            KernelRelease = KernelFiles.TryRead("/proc/sys/kernel/osrelease")?.Trim() ?? "",
            BootTimeMs = GuestUptime.Milliseconds(KernelFiles.TryRead("/proc/uptime")),
        };
        response.Transports.AddRange(_transports());
        return Task.FromResult(response);
    }

    public async Task<Empty> CreateSandboxAsync(CreateSandboxRequest request, CancellationToken ct)
    {
        await _sandboxGate.WaitAsync(ct);
        try
        {
            if (_sandboxId != null && _sandboxId != request.SandboxId)
            {
                throw AgentException.FailedPrecondition($"this VM already runs sandbox {_sandboxId}, not {request.SandboxId}");
            }

            RefreshRestoredGuest(request);
            if (request.Hostname.Length > 0)
            {
                try
                {
                    Libc.SetHostname(request.Hostname);
                }
                catch (NativeIOException e)
                {
                    throw AgentException.InvalidArgument($"cannot set the hostname to \"{request.Hostname}\": {Libc.StrError(e.Errno)}");
                }
            }

            if (request.ShareMountTag.Length > 0)
            {
                var path = request.ShareGuestPath.Length > 0 ? request.ShareGuestPath : _options.DefaultSharePath;
                if (!path.StartsWith('/'))
                {
                    throw AgentException.InvalidArgument($"share_guest_path \"{path}\" is not absolute");
                }

                if (_sharePath == null)
                {
                    MountShare(request.ShareMountTag, request.ShareFstype, [.. request.ShareOptions], path);
                    _sharePath = path;
                }
                else if (_sharePath != path)
                {
                    throw AgentException.FailedPrecondition($"the share is already mounted at {_sharePath}");
                }
            }

            _sandboxId = request.SandboxId;
            var uptime = Transport.AgentTransport.Uptime();
            LogSandboxCreated(_logger, request.SandboxId, request.Hostname, _sharePath ?? "(none)", uptime);
            return new Empty();
        }
        finally
        {
            _sandboxGate.Release();
        }
    }

    /// <summary>A VM restored from a template wakes with the template's wall clock and RNG state: take the host's
    /// time and random bytes before any container runs. A failure is logged, not fatal (the pod still works; its
    /// clock or randomness is the template's, which the log says).</summary>
    private void RefreshRestoredGuest(CreateSandboxRequest request)
    {
        if (request.HostTimeUnixNano != 0)
        {
            try
            {
                Libc.SetRealtimeClock(request.HostTimeUnixNano);
            }
            catch (IOException e)
            {
                LogRestoreRefreshFailed(_logger, "set the wall clock", e.Message);
            }
        }

        if (request.Entropy.Length > 0)
        {
            try
            {
                Libc.AddEntropyAndReseed(request.Entropy.Span);
            }
            catch (IOException e)
            {
                LogRestoreRefreshFailed(_logger, "reseed the RNG", e.Message);
            }
        }
    }

    public async Task<Empty> DestroySandboxAsync(DestroySandboxRequest request, CancellationToken ct)
    {
        foreach (var id in _containers.Keys.ToList())
        {
            try
            {
                await RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id }, ct);
            }
            catch (AgentException e) when (e.Code == TtrpcStatusCode.NotFound)
            {
            }
            catch (Exception e) when (e is AgentException or IOException)
            {
                LogContainerCleanupFailed(_logger, id, "the container", e.Message);
            }
        }

        await _sandboxGate.WaitAsync(ct);
        try
        {
            if (_sharePath != null && Libc.umount2(_sharePath, Libc.MNT_DETACH) != 0)
            {
                LogCleanupFailed(_logger, _sharePath, Libc.StrError(Libc.Errno));
            }

            _sharePath = null;
            LogSandboxDestroyed(_logger, _sandboxId ?? "(none)");
            _destroyed.TrySetResult();
            return new Empty();
        }
        finally
        {
            _sandboxGate.Release();
        }
    }

    private static void MountShare(string tag, string fstype, IReadOnlyList<string> options, string path)
    {
        fstype = fstype.Length == 0 ? "9p" : fstype;
        if (fstype is not ("9p" or "virtiofs"))
        {
            throw AgentException.InvalidArgument($"share_fstype \"{fstype}\" is not supported (9p or virtiofs)");
        }

        var parsed = MountOptionParser.Parse(options.Count > 0 ? options : fstype == "9p" ? AgentOptions.Default9pOptions : []);
        Directory.CreateDirectory(path);
        try
        {
            // No nosuid/nodev of its own: the share holds the containers' root filesystems and bind sources, which get
            // exactly the mount options their spec asks for (a setuid binary in an image works as under runc).
            Libc.Mount(tag, path, fstype, parsed.Flags, parsed.Data.Length > 0 ? parsed.Data : null);

            // Shared, so that a volume bound with shared or slave propagation into several containers keeps them
            // peers (or slaves) of this mount: what one mounts under it, the others see (containers' own rootfs
            // binds are made private by the helper and propagate nowhere).
            Libc.Mount(null, path, null, Libc.MS_SHARED, null);
        }
        catch (NativeIOException e)
        {
            var hint = e.Errno is Libc.ENOENT or Libc.EINVAL
                ? $" (no {fstype} device with mount tag \"{tag}\"?)"
                : e.Errno == Libc.ENODEV ? $" (the guest kernel lacks {fstype})" : "";
            throw AgentException.FailedPrecondition($"cannot mount the {fstype} share \"{tag}\" on {path}: {Libc.StrError(e.Errno)}{hint}");
        }
    }

    // ---- containers ----------------------------------------------------------------------------------------

    public async Task<CreateContainerResponse> CreateContainerAsync(CreateContainerRequest request, CancellationToken ct)
    {
        var (id, spec, rootfs, settings) = DecodeCreate(request);
        if (!Directory.Exists(rootfs))
        {
            throw AgentException.FailedPrecondition($"rootfs {rootfs} does not exist in the guest (share not mounted, or the host did not mount the rootfs there)");
        }

        if (!_creating.TryAdd(id, 0))
        {
            throw AgentException.AlreadyExists($"container {id} is being created");
        }

        if (_containers.ContainsKey(id))
        {
            _creating.TryRemove(id, out _);
            throw AgentException.AlreadyExists($"container {id} already exists");
        }

        Cgroup? cgroup = null;
        ProcessStdio? stdio = null;
        HelperSession? session = null;
        try
        {
            if (Cgroup.IsAvailable(_options.CgroupRoot))
            {
                cgroup = Cgroup.Create(id, _options.CgroupRoot);
                cgroup.Apply(settings);
            }
            else if (settings.Count > 0)
            {
                LogContainerWarning(_logger, id, "the guest has no cgroup v2: resource limits are not applied");
            }

            stdio = ProcessStdio.Create(request.Terminal, request.Stdin, request.Stdout, request.Stderr, spec.Process?.ConsoleSize);
            var plan = ContainerPlanner.PlanCreate(spec, rootfs, request.Terminal, stdio.ConsolePath, new PlannerContext
            {
                Cgroup2 = cgroup != null,
                SharePath = _sharePath,
                Sandbox = PodSandboxFor(id, spec),
            });
            foreach (var warning in plan.Warnings)
            {
                LogContainerWarning(_logger, id, warning);
            }

            if (_logger.IsEnabled(LogLevel.Debug))
            {
                var described = plan.Instructions.Describe();
                LogPlan(_logger, id, described);
                if (plan.Seccomp is { } filter)
                {
                    LogSeccomp(_logger, id, filter.InstructionCount, filter.Ignored.Count == 0 ? "none" : string.Join(' ', filter.Ignored));
                }
            }
            var cg = cgroup;
            session = await HelperSession.LaunchAsync(
                _options.HelperPath, plan.Instructions.Encode(), stdio.ChildFds, pid => cg?.AddProcess(pid), ct);
            stdio.CloseChildEnds();
            stdio.StartPumps();

            var init = new AgentProcess(id, "", session, stdio, cgroup, plan.Args);
            var oom = cgroup == null ? null : OomWatcher.Start(cgroup, id, () => ReportOom(id));
            var container = new Container(id, rootfs, plan.NamespaceFlags, cgroup, init, oom)
            {
                Seccomp = plan.Seccomp,
                SharesPidNamespace = plan.SharesPidNamespace,
            };
            if (!_containers.TryAdd(id, container))
            {
                oom?.Dispose();
                throw AgentException.AlreadyExists($"container {id} already exists");
            }

            _ = ObserveExitAsync(init);
            if (container.SharesPidNamespace)
            {
                _ = KillRestWhenInitExitsAsync(container);
            }

            LogContainerCreated(_logger, id, session.Pid);
            return new CreateContainerResponse { Pid = (uint)session.Pid };
        }
        catch
        {
            if (session != null && !session.Exit.IsCompleted)
            {
                Libc.kill(session.Pid, Libc.SIGKILL);
            }

            session?.Dispose();
            stdio?.Dispose();
            if (cgroup != null)
            {
                TryRemoveCgroup(id, cgroup);
            }

            throw;
        }
        finally
        {
            _creating.TryRemove(id, out _);
        }
    }

    public async Task<Empty> StartContainerAsync(StartContainerRequest request, CancellationToken ct)
    {
        var container = GetContainer(request.ContainerId);
        await container.Gate.WaitAsync(ct);
        try
        {
            if (container.Status != ContainerStatus.Created)
            {
                throw AgentException.FailedPrecondition($"container {container.Id} is already started");
            }

            if (container.HasExited)
            {
                throw AgentException.FailedPrecondition($"container {container.Id} has exited before it was started");
            }

            container.Status = ContainerStatus.Running;
            await container.Init.Session.StartAsync();
            LogContainerStarted(_logger, container.Id);
            return new Empty();
        }
        finally
        {
            container.Gate.Release();
        }
    }

    public async Task<Empty> RemoveContainerAsync(RemoveContainerRequest request, CancellationToken ct)
    {
        var container = GetContainer(request.ContainerId);
        await container.Gate.WaitAsync(ct);
        try
        {
            if (!_containers.ContainsKey(container.Id))
            {
                throw AgentException.NotFound($"container {container.Id} not found");
            }

            KillAll(container);

            // A never-started init sees its start pipe close and exits by itself too.
            container.Init.Session.Dispose();
            var exited = await Task.WhenAll(container.AllProcesses.Select(p => p.Completion))
                .WaitAsync(_options.KillTimeout, ct)
                .ContinueWith(t => t.IsCompletedSuccessfully, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            if (!exited)
            {
                LogContainerWarning(_logger, container.Id, $"processes still running {_options.KillTimeout.TotalSeconds:0} s after SIGKILL");
            }

            container.Oom?.Dispose();
            if (container.Cgroup is { } cgroup)
            {
                await Task.Run(() => TryRemoveCgroup(container.Id, cgroup), CancellationToken.None);
            }

            _containers.TryRemove(container.Id, out _);
            foreach (var process in container.AllProcesses)
            {
                // Joins the output threads (bounded): off the request path.
                _ = Task.Run(process.Dispose, CancellationToken.None);
            }

            LogContainerRemoved(_logger, container.Id);
            return new Empty();
        }
        finally
        {
            container.Gate.Release();
        }
    }

    // ---- processes -----------------------------------------------------------------------------------------

    public async Task<ExecProcessResponse> ExecProcessAsync(ExecProcessRequest request, CancellationToken ct)
    {
        var container = GetContainer(request.ContainerId);
        var (execId, process) = DecodeExec(request);
        await container.Gate.WaitAsync(ct);
        ProcessStdio? stdio = null;
        HelperSession? session = null;
        try
        {
            if (container.HasExited)
            {
                throw AgentException.FailedPrecondition($"container {container.Id} is not running");
            }

            if (container.Cgroup?.IsFrozen == true)
            {
                throw AgentException.FailedPrecondition($"container {container.Id} is paused");
            }

            if (container.Execs.ContainsKey(execId))
            {
                throw AgentException.AlreadyExists($"exec {execId} already exists in container {container.Id}");
            }

            // An exec's terminal comes from the container's own devpts (when it has one): `tty` names it there.
            var containerPtmx = $"/proc/{container.Init.Pid}/root/dev/pts/ptmx";
            stdio = ProcessStdio.Create(
                request.Terminal, request.Stdin, request.Stdout, request.Stderr, process.ConsoleSize,
                ptmx: request.Terminal && File.Exists(containerPtmx) ? containerPtmx : ProcessStdio.DefaultPtmx);
            var plan = ContainerPlanner.PlanExec(container.Init.Pid, container.NamespaceFlags, process, request.Terminal, container.Seccomp);
            foreach (var warning in plan.Warnings)
            {
                LogExecWarning(_logger, container.Id, execId, warning);
            }

            var cgroup = container.Cgroup;
            session = await HelperSession.LaunchAsync(
                _options.HelperPath, plan.Instructions.Encode(), stdio.ChildFds, pid => cgroup?.AddProcess(pid), ct);
            stdio.CloseChildEnds();
            stdio.StartPumps();
            var exec = new AgentProcess(container.Id, execId, session, stdio, cgroup, plan.Args);
            container.Execs[execId] = exec;
            try
            {
                await session.StartAsync();
            }
            catch
            {
                container.Execs.TryRemove(execId, out _);
                throw;
            }

            _ = ObserveExitAsync(exec);
            LogExecStarted(_logger, container.Id, execId, session.Pid);
            return new ExecProcessResponse { Pid = (uint)session.Pid };
        }
        catch
        {
            if (session != null && !session.Exit.IsCompleted)
            {
                Libc.kill(session.Pid, Libc.SIGKILL);
            }

            session?.Dispose();
            stdio?.Dispose();
            throw;
        }
        finally
        {
            container.Gate.Release();
        }
    }

    public async Task<WaitProcessResponse> WaitProcessAsync(WaitProcessRequest request, CancellationToken ct)
    {
        var process = GetProcess(request.ContainerId, request.ExecId);
        var result = await process.Completion.WaitAsync(ct);
        return new WaitProcessResponse
        {
            ExitStatus = result.ExitStatus,
            Pid = (uint)process.Pid,
            ExitedAtUnixNano = result.ExitedAtUnixNano,
            OomKilled = result.OomKilled,
        };
    }

    public Task<Empty> SignalProcessAsync(SignalProcessRequest request, CancellationToken ct)
    {
        if (request.Signal is 0 or > 64)
        {
            throw AgentException.InvalidArgument($"invalid signal {request.Signal}");
        }

        var signal = (int)request.Signal;
        if (request.All)
        {
            var container = GetContainer(request.ContainerId);
            if (container.Cgroup is { } cgroup)
            {
                cgroup.Signal(signal);
            }
            else
            {
                foreach (var p in container.AllProcesses.Where(p => !p.HasExited))
                {
                    Libc.kill(p.Pid, signal);
                }
            }
        }
        else
        {
            GetProcess(request.ContainerId, request.ExecId).Signal(signal);
        }

        LogSignalled(_logger, request.ContainerId, request.ExecId, signal, request.All);
        return Task.FromResult(new Empty());
    }

    public async Task<WriteStreamResponse> WriteStdinAsync(WriteStreamRequest request, CancellationToken ct)
    {
        var process = GetProcess(request.ContainerId, request.ExecId);
        var stdin = process.Stdio.Stdin ?? throw AgentException.FailedPrecondition($"process {process.Name} has no stdin");
        var offset = request.Offset <= long.MaxValue ? (long)request.Offset : throw AgentException.InvalidArgument($"stdin offset {request.Offset} is out of range");
        var n = await stdin.WriteAsync(request.Data.Memory, offset, ct);
        return new WriteStreamResponse { Len = (uint)n };
    }

    public async Task<ReadStreamResponse> ReadOutputAsync(ReadStreamRequest request, bool stderr, TtrpcCallContext context)
    {
        var process = GetProcess(request.ContainerId, request.ExecId);
        var stream = stderr ? process.Stdio.Stderr : process.Stdio.Stdout;
        if (stream == null)
        {
            return new ReadStreamResponse();
        }

        var max = request.Len == 0 ? 64 * 1024 : (int)Math.Min(request.Len, (uint)MaxReadChunk);
        var chunk = await stream.ReadAsync(max, context.CancellationToken);
        // The answer wraps the pooled chunk; it goes back to the pool once the answer is serialized.
        context.OnCompleted(chunk.Return);
        return new ReadStreamResponse { Data = UnsafeByteOperations.UnsafeWrap(chunk.Memory), Offset = (ulong)chunk.Offset };
    }

    public async Task<Empty> CloseStdinAsync(CloseStdinRequest request, CancellationToken ct)
    {
        var process = GetProcess(request.ContainerId, request.ExecId);
        if (process.Stdio.Stdin is { } stdin)
        {
            await stdin.CloseAsync();
        }

        return new Empty();
    }

    public Task<Empty> TtyWinResizeAsync(TtyWinResizeRequest request, CancellationToken ct)
    {
        var process = GetProcess(request.ContainerId, request.ExecId);
        if (!process.Stdio.Terminal)
        {
            throw AgentException.FailedPrecondition($"process {process.Name} has no terminal");
        }

        process.Stdio.Resize(request.Rows, request.Cols);
        return Task.FromResult(new Empty());
    }

    // ---- container control ---------------------------------------------------------------------------------

    public async Task<Empty> SetPausedAsync(ContainerRequest request, bool paused, CancellationToken ct)
    {
        var container = GetContainer(request.ContainerId);
        var cgroup = container.Cgroup ?? throw AgentException.FailedPrecondition("the guest has no cgroup v2: pause is not available");
        await container.Gate.WaitAsync(ct);
        try
        {
            if (container.HasExited)
            {
                throw AgentException.FailedPrecondition($"container {container.Id} is not running");
            }

            await Task.Run(() => cgroup.SetFrozen(paused, _options.FreezeTimeout), CancellationToken.None);
            LogPaused(_logger, container.Id, paused);
            return new Empty();
        }
        finally
        {
            container.Gate.Release();
        }
    }

    public Task<ListProcessesResponse> ListProcessesAsync(ContainerRequest request, CancellationToken ct)
    {
        var container = GetContainer(request.ContainerId);
        var known = container.AllProcesses.Where(p => !p.HasExited).ToDictionary(p => p.Pid, p => p.ExecId);
        var pids = container.Cgroup?.Processes() ?? [.. known.Keys];
        var response = new ListProcessesResponse();
        foreach (var pid in pids.Order())
        {
            var entry = new ProcessEntry { Pid = (uint)pid, ExecId = known.GetValueOrDefault(pid, "") };
            entry.Args.AddRange(CommandLine(pid));
            response.Processes.Add(entry);
        }

        return Task.FromResult(response);
    }

    public Task<StatsContainerResponse> StatsContainerAsync(ContainerRequest request, CancellationToken ct)
    {
        var container = GetContainer(request.ContainerId);
        var cgroup = container.Cgroup ?? throw AgentException.FailedPrecondition("the guest has no cgroup v2: no statistics");
        var s = cgroup.Stats();
        return Task.FromResult(new StatsContainerResponse
        {
            CgroupVersion = "v2",
            CpuUsageUsec = s.CpuUsageUsec,
            CpuUserUsec = s.CpuUserUsec,
            CpuSystemUsec = s.CpuSystemUsec,
            MemoryUsageBytes = s.MemoryUsage,
            MemoryLimitBytes = s.MemoryLimit,
            MemoryMaxUsageBytes = s.MemoryMaxUsage,
            MemorySwapUsageBytes = s.SwapUsage,
            PidsCurrent = s.PidsCurrent,
            PidsLimit = s.PidsLimit,
            IoReadBytes = s.IoReadBytes,
            IoWriteBytes = s.IoWriteBytes,
            OomKillCount = s.OomKills,
        });
    }

    public Task<Empty> UpdateContainerAsync(UpdateContainerRequest request, CancellationToken ct)
    {
        var container = GetContainer(request.ContainerId);
        var settings = DecodeUpdate(request);
        var cgroup = container.Cgroup ?? throw AgentException.FailedPrecondition("the guest has no cgroup v2: resources cannot be updated");
        cgroup.Apply(settings);
        var applied = string.Join(' ', settings);
        LogUpdated(_logger, container.Id, applied);
        return Task.FromResult(new Empty());
    }

    public async Task<Empty> OnlineCpuMemAsync(OnlineCpuMemRequest request, CancellationToken ct)
    {
        var (cpus, blocks) = await _onliner.OnlineAsync(request.NbCpus, request.CpuOnly, ct);
        LogOnlined(_logger, cpus, blocks);
        return new Empty();
    }

    public async Task<OomEvent> GetOomEventAsync(GetOomEventRequest request, CancellationToken ct)
    {
        var id = await _oomEvents.Reader.ReadAsync(ct);
        return new OomEvent { ContainerId = id };
    }

    public Task<LogRecords> GetLogRecordsAsync(GetLogRecordsRequest request, CancellationToken ct)
    {
        var max = request.MaxRecords == 0 ? MaxLogBatch : (int)Math.Min(request.MaxRecords, MaxLogBatch);
        return _logRecords.TakeAsync(request.AfterSequence, max, wait: !request.NoWait, ct);
    }

    // ---- network -------------------------------------------------------------------------------------------

    public async Task<Interface> UpdateInterfaceAsync(Interface request, CancellationToken ct)
    {
        var result = await GuestNetwork.UpdateInterfaceAsync(request, ct);
        if (_logger.IsEnabled(LogLevel.Information))
        {
            var addresses = string.Join(' ', request.IpAddresses.Select(a => $"{a.Address}/{a.PrefixLength}"));
            LogInterface(_logger, request.Name, request.HwAddr, addresses);
        }

        return result;
    }

    public Task<UpdateRoutesResponse> UpdateRoutesAsync(UpdateRoutesRequest request, CancellationToken ct)
    {
        var result = GuestNetwork.UpdateRoutes(request);
        if (_logger.IsEnabled(LogLevel.Information))
        {
            var routes = string.Join(", ", request.Routes.Select(r => $"{r.Destination}{(r.Gateway.Length > 0 ? " via " + r.Gateway : "")} dev {r.Device}"));
            LogRoutes(_logger, routes);
        }

        return Task.FromResult(result);
    }

    // ---- helpers -------------------------------------------------------------------------------------------

    /// <summary>
    /// What a CreateContainer request asks, checked before anything is created (the resources too): malformed
    /// input is an <see cref="AgentException"/>, nothing else. The fuzz tests drive this with arbitrary bytes.
    /// </summary>
    internal static (string Id, OciSpec Spec, string Rootfs, IReadOnlyList<CgroupSetting> Settings) DecodeCreate(CreateContainerRequest request)
    {
        var id = ValidateId(request.ContainerId, "container id");
        var spec = OciJson.ParseSpec(request.OciSpecJson.Span);
        var rootfs = request.RootfsGuestPath.Length > 0 ? request.RootfsGuestPath : spec.Root?.Path ?? "";
        if (!rootfs.StartsWith('/'))
        {
            throw AgentException.InvalidArgument($"rootfs_guest_path \"{rootfs}\" is not an absolute guest path");
        }

        return (id, spec, rootfs, CgroupResources.Translate(spec.Linux?.Resources));
    }

    /// <summary>An ExecProcess request's exec id and process, checked (see <see cref="DecodeCreate"/>).</summary>
    internal static (string ExecId, OciProcess Process) DecodeExec(ExecProcessRequest request) =>
        (ValidateId(request.ExecId, "exec id"), OciJson.ParseProcess(request.ProcessJson.Span));

    /// <summary>An UpdateContainer request's resources as cgroup settings, checked (see <see cref="DecodeCreate"/>).</summary>
    internal static IReadOnlyList<CgroupSetting> DecodeUpdate(UpdateContainerRequest request) =>
        CgroupResources.Translate(OciJson.ParseResources(request.ResourcesJson.Span));

    private static string ValidateId(string id, string what)
    {
        if (id.Length == 0 || id.Length > 255 || id is "." or ".." || id.Contains('/', StringComparison.Ordinal)
            || id.Any(c => char.IsControl(c) || char.IsWhiteSpace(c)))
        {
            throw AgentException.InvalidArgument($"invalid {what} \"{id}\"");
        }

        return id;
    }

    private static string[] CommandLine(int pid)
    {
        try
        {
            var raw = File.ReadAllBytes($"/proc/{pid}/cmdline");
            return Encoding.UTF8.GetString(raw).Split('\0', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (IOException)
        {
            return [];
        }
    }

    private static void KillAll(Container container)
    {
        try
        {
            container.Cgroup?.Signal(Libc.SIGKILL);
        }
        catch (NativeIOException)
        {
            // Fall back to the processes the agent knows.
        }

        foreach (var p in container.AllProcesses.Where(p => !p.HasExited))
        {
            Libc.kill(p.Pid, Libc.SIGKILL);
        }
    }

    private Container GetContainer(string id) =>
        _containers.TryGetValue(id, out var c) ? c : throw AgentException.NotFound($"container {id} not found");

    private AgentProcess GetProcess(string containerId, string execId)
    {
        var container = GetContainer(containerId);
        if (execId.Length == 0)
        {
            return container.Init;
        }

        return container.Execs.TryGetValue(execId, out var p) ? p : throw AgentException.NotFound($"exec {execId} not found in container {containerId}");
    }

    /// <summary>
    /// The pod's sandbox container, when <paramref name="id"/> is another container of the pod and the sandbox's
    /// init is running here: the namespaces its spec names by /proc path are the sandbox's.
    /// </summary>
    private PodSandbox? PodSandboxFor(string id, OciSpec spec)
    {
        var sandboxId = PodNamespaces.SandboxIdOf(spec.Annotations, _sandboxId);
        if (sandboxId == null || PodNamespaces.IsSandboxContainer(spec.Annotations, id, sandboxId))
        {
            return null;
        }

        if (!_containers.TryGetValue(sandboxId, out var sandbox))
        {
            return null;
        }

        if (sandbox.HasExited)
        {
            throw AgentException.FailedPrecondition($"the pod's sandbox container {sandboxId} has exited: its namespaces are gone");
        }

        return new PodSandbox(sandboxId, sandbox.Init.Pid);
    }

    /// <summary>
    /// Without a PID namespace of its own nothing ends the container's other processes when its init exits:
    /// kill them, as runc's shim does for a container in a shared PID namespace.
    /// </summary>
    private static async Task KillRestWhenInitExitsAsync(Container container)
    {
        await container.Init.Completion;
        try
        {
            KillAll(container);
        }
        catch (IOException)
        {
            // The cgroup went with a removal that raced this: nothing is left to kill.
        }
    }

    private async Task ObserveExitAsync(AgentProcess process)
    {
        var result = await process.Completion;
        LogProcessExited(_logger, process.Name, process.Pid, result.ExitStatus, result.OomKilled);
    }

    private void ReportOom(string id)
    {
        LogOom(_logger, id);
        _oomEvents.Writer.TryWrite(id);
    }

    private void TryRemoveCgroup(string id, Cgroup cgroup)
    {
        try
        {
            if (!cgroup.WaitEmpty(_options.KillTimeout))
            {
                LogContainerWarning(_logger, id, $"cgroup {cgroup.Path} still has processes");
            }

            cgroup.Remove();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogContainerCleanupFailed(_logger, id, $"cgroup {cgroup.Path}", e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId} created: hostname {Hostname}, share at {SharePath} (uptime {Uptime} s)")]
    private static partial void LogSandboxCreated(ILogger logger, string sandboxId, string hostname, string sharePath, string uptime);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not {What} of this restored VM: {Reason}")]
    private static partial void LogRestoreRefreshFailed(ILogger logger, string what, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId} destroyed")]
    private static partial void LogSandboxDestroyed(ILogger logger, string sandboxId);

    [LoggerMessage(Level = LogLevel.Information, Message = "container {Id} created, init pid {Pid}")]
    private static partial void LogContainerCreated(ILogger logger, string id, int pid);

    [LoggerMessage(Level = LogLevel.Information, Message = "interface {Name} ({Mac}) up with {Addresses}")]
    private static partial void LogInterface(ILogger logger, string name, string mac, string addresses);

    [LoggerMessage(Level = LogLevel.Information, Message = "routes: {Routes}")]
    private static partial void LogRoutes(ILogger logger, string routes);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Id}: seccomp filter of {Instructions} BPF instructions; syscalls unknown to the guest's architectures: {Ignored}")]
    private static partial void LogSeccomp(ILogger logger, string id, int instructions, string ignored);

    [LoggerMessage(Level = LogLevel.Debug, Message = "container {Id} instructions: {Instructions}")]
    private static partial void LogPlan(ILogger logger, string id, string instructions);

    [LoggerMessage(Level = LogLevel.Information, Message = "container {Id} started")]
    private static partial void LogContainerStarted(ILogger logger, string id);

    [LoggerMessage(Level = LogLevel.Information, Message = "container {Id} removed")]
    private static partial void LogContainerRemoved(ILogger logger, string id);

    [LoggerMessage(Level = LogLevel.Information, Message = "exec {ContainerId}/{ExecId} started, pid {Pid}")]
    private static partial void LogExecStarted(ILogger logger, string containerId, string execId, int pid);

    [LoggerMessage(Level = LogLevel.Information, Message = "process {Name} (pid {Pid}) exited with status {Status} (oom killed: {OomKilled})")]
    private static partial void LogProcessExited(ILogger logger, string name, int pid, uint status, bool oomKilled);

    [LoggerMessage(Level = LogLevel.Debug, Message = "signal {Signal} to {ContainerId}/'{ExecId}' (all: {All})")]
    private static partial void LogSignalled(ILogger logger, string containerId, string execId, int signal, bool all);

    [LoggerMessage(Level = LogLevel.Information, Message = "container {Id} paused: {Paused}")]
    private static partial void LogPaused(ILogger logger, string id, bool paused);

    [LoggerMessage(Level = LogLevel.Information, Message = "container {Id} resources updated: {Settings}")]
    private static partial void LogUpdated(ILogger logger, string id, string settings);

    [LoggerMessage(Level = LogLevel.Information, Message = "onlined {Cpus} cpu(s) and {Blocks} memory block(s)")]
    private static partial void LogOnlined(ILogger logger, int cpus, int blocks);

    // Warnings about one container name it with a ContainerId (and ExecId) parameter and start with the
    // "container {ContainerId}: " / "exec {ContainerId}/{ExecId}: " prefix: LogRecordCapture relies on both.
    [LoggerMessage(Level = LogLevel.Warning, Message = "container {ContainerId}: OOM kill")]
    private static partial void LogOom(ILogger logger, string containerId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "container {ContainerId}: {Message}")]
    private static partial void LogContainerWarning(ILogger logger, string containerId, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "exec {ContainerId}/{ExecId}: {Message}")]
    private static partial void LogExecWarning(ILogger logger, string containerId, string execId, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Message}")]
    private static partial void LogGuestWarning(ILogger logger, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "container {ContainerId}: cleanup of {What} failed: {Reason}")]
    private static partial void LogContainerCleanupFailed(ILogger logger, string containerId, string what, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cleanup of {What} failed: {Reason}")]
    private static partial void LogCleanupFailed(ILogger logger, string what, string reason);
}
