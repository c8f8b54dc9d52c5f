using Microsoft.Extensions.Logging;
using ShimV2.Agent.Protocol;
using ShimV2.Hypervisor;
using ShimV2.Hypervisor.Templates;
using ShimV2.Netlink;
using ShimV2.Shim.Native;
using ShimV2.Shim.Network;
using ShimV2.Shim.PortForward;
using ShimV2.Shim.Timeline;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Sandbox;

/// <summary>A pod VM: one QEMU, its agent connection, and the sandbox's host directories.</summary>
public sealed partial class QemuSandbox : ISandbox
{
    /// <summary>Under the state root, beside the pods (see README, "VM templates").</summary>
    public const string TemplatesDirectoryName = ".templates";

    private readonly QemuVm _vm;
    private readonly TtrpcClient _connection;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _resize = new(1, 1);
    private readonly HypervisorConfig _config;
    private readonly PodNetwork? _network;
    private readonly AgentLogForwarder _agentLog;
    private PodPortForwarder? _portForward;
    private int _stopped;

    private QemuSandbox(
        string id, SandboxPaths paths, QemuVm vm, TtrpcClient connection, HypervisorConfig config, PodNetwork? network, AgentLogForwarder agentLog, ILogger logger)
    {
        _agentLog = agentLog;
        _network = network;
        _config = config;
        BootSize = new SandboxSize(config.VCpus, config.MemoryMiB);
        Size = BootSize;
        Id = id;
        Paths = paths;
        _vm = vm;
        _connection = connection;
        _logger = logger;
        Agent = new AgentClient(connection, TimeSpan.FromSeconds(config.AgentTimeoutSeconds));
    }

    public string Id { get; }

    public SandboxPaths Paths { get; }

    public int Pid => _vm.Pid;

    public AgentClient Agent { get; }

    public Task Exited => _vm.Exited;

    public bool StopRequested => Volatile.Read(ref _stopped) == 1 || _vm.Exited.IsCompleted;

    public string? ExitReason => _vm.ExitReason;

    public Task PauseVmAsync(CancellationToken cancellationToken) => _vm.PauseAsync(cancellationToken);

    public Task ResumeVmAsync(CancellationToken cancellationToken) => _vm.ResumeAsync(cancellationToken);

    internal static async Task<QemuSandbox> LaunchAsync(
        SandboxLaunchRequest request, HypervisorConfig config, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        var logger = loggerFactory.CreateLogger<QemuSandbox>();
        var paths = new SandboxPaths(request.SandboxId);
        QemuVm? vm = null;
        TtrpcClient? connection = null;
        PodNetwork? network = null;
        AgentLogForwarder? agentLog = null;
        Cgroups.HostCgroup? hostCgroup = null;
        try
        {
            SandboxDisk.CreateDirectories(paths);
            SandboxDisk.EnsureSpace(paths);
            if (config.SharedFs == "virtio-fs")
            {
                SharedMountPoint.Make(paths.SharedDirectory);
            }

            network = ScanNetwork(request, logger);
            hostCgroup = await EnterHostCgroupAsync(request, paths, logger, cancellationToken);
            var spec = new VmSpec
            {
                SandboxId = request.SandboxId,
                WorkDirectory = paths.VmDirectory,
                Config = config,
                SharedDirectory = paths.SharedDirectory,
                ShareMountTag = SandboxPaths.ShareMountTag,
                NetworkNamespace = request.NetworkNamespace,
                Nics = network?.Nics ?? [],
            };
            var templates = config.UseTemplate ? TemplateOptions(paths, loggerFactory) : null;
            AgentClient agent;
            ShimV2.Agent.Protocol.V1.CheckResponse health;
            while (true)
            {
                vm = await QemuVm.StartAsync(spec, loggerFactory, templates, cancellationToken);
                request.Timeline?.MarkAt(BootPhase.QemuSpawned, vm.SpawnedAt);
                request.Timeline?.MarkAt(BootPhase.QmpReady, vm.QmpReadyAt);
                LogVmStarted(logger, request.SandboxId, vm.Pid, vm.AgentTransport);
                ConfirmInHostCgroup(hostCgroup, vm.Pid);
                if (network is { Interfaces.Count: > 0 })
                {
                    Wire(() => network.Connect(), "connect the pod network to the VM");
                }

                try
                {
                    (connection, agent, health) = await ConnectAgentAsync(vm, request.SandboxId, TimeSpan.FromSeconds(Math.Max(5, config.BootTimeoutSeconds)), loggerFactory, cancellationToken);
                    break;
                }
                catch (Exception e) when (vm.RestoredFrom is { } template && templates is not null && !cancellationToken.IsCancellationRequested
                    && e is SandboxException or OperationCanceledException or IOException or TtrpcException or HypervisorException)
                {
                    // A template that restores but whose guest does not answer is broken: never use it again.
                    LogRestoredGuestSilent(logger, request.SandboxId, template.Key.Value, e.Message);
                    templates.Store.Discard(template);
                    templates = null;
                    // Its taps went with it; the cold VM's are new interfaces, redirected afresh.
                    Unwire(network, logger, request.SandboxId);
                    if (connection is not null)
                    {
                        await connection.DisposeAsync();
                        connection = null;
                    }

                    await vm.DisposeAsync();
                    vm = null;
                }
            }

            using var boot = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            boot.CancelAfter(TimeSpan.FromSeconds(Math.Max(5, config.BootTimeoutSeconds)));
            if (request.Timeline is { } timeline)
            {
                var agentReadyMs = timeline.ElapsedMs(TimeProvider.System.GetTimestamp());
                if (vm.RestoredFrom is not null)
                {
                    timeline.MarkAt(BootPhase.Restored, vm.RestoredAt);
                }
                else if (BootTimeline.KernelUpMs(timeline.ElapsedMs(vm.SpawnedAt), agentReadyMs, health.BootTimeMs) is { } kernelUpMs)
                {
                    timeline.MarkElapsed(BootPhase.KernelUp, kernelUpMs);
                }

                timeline.MarkElapsed(BootPhase.AgentReady, agentReadyMs);
            }

            LogAgentReady(logger, request.SandboxId, health.KernelRelease, health.AgentVersion);
            agentLog = AgentLogForwarder.Start(agent, request.SandboxId, loggerFactory.CreateLogger<AgentLogForwarder>());

            await agent.CreateSandboxAsync(
                new ShimV2.Agent.Protocol.V1.CreateSandboxRequest
                {
                    SandboxId = request.SandboxId,
                    Hostname = request.Hostname,
                    ShareMountTag = SandboxPaths.ShareMountTag,
                    ShareFstype = config.SharedFs == "virtio-fs" ? "virtiofs" : "9p",
                    ShareGuestPath = SandboxPaths.GuestSharePath,
                    HostTimeUnixNano = vm.RestoredFrom is null ? 0 : (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100,
                    Entropy = vm.RestoredFrom is null ? Google.Protobuf.ByteString.Empty : Google.Protobuf.ByteString.CopyFrom(Libc.RandomBytes(64)),
                },
                null,
                boot.Token);
            if (network is { Interfaces.Count: > 0 })
            {
                var guestMacs = vm.GuestNicMacs;
                for (var i = 0; i < network.Interfaces.Count; i++)
                {
                    await agent.UpdateInterfaceAsync(PodNetwork.ToAgent(network.Interfaces[i], guestMacs[i]), null, boot.Token);
                }

                var routes = new ShimV2.Agent.Protocol.V1.UpdateRoutesRequest();
                routes.Routes.Add(network.Routes);
                await agent.UpdateRoutesAsync(routes, null, boot.Token);
            }

            request.Timeline?.Mark(BootPhase.SandboxConfigured);
            var sandbox = new QemuSandbox(request.SandboxId, paths, vm, connection, config, network, agentLog, logger) { HostCgroup = hostCgroup };
            if (request.NetworkNamespace is { } netns)
            {
                sandbox._portForward = PodPortForwarder.ForPod(
                    request.SandboxId, netns, connection, TimeSpan.FromSeconds(config.AgentTimeoutSeconds), loggerFactory.CreateLogger<PodPortForwarder>());
            }

            return sandbox;
        }
        catch (Exception e)
        {
            LogLaunchFailed(logger, request.SandboxId, e.Message);
            if (agentLog is not null)
            {
                await agentLog.StopAsync();
            }

            if (connection is not null)
            {
                await connection.DisposeAsync();
            }

            if (vm is not null)
            {
                await vm.DisposeAsync();
            }

            Unwire(network, logger, request.SandboxId);
            await LeaveHostCgroupAsync(hostCgroup);
            RemoveHostState(paths);
            if (e is OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                throw new SandboxException($"guest agent did not answer within {config.BootTimeoutSeconds}s");
            }

            throw;
        }
    }

    /// <summary>Templates live beside the pods' directories (a containerd id cannot start with a dot); a template
    /// guest is ready to be saved once its agent answered Check.</summary>
    private static VmTemplateOptions TemplateOptions(SandboxPaths paths, ILoggerFactory loggerFactory) => new(
        new VmTemplateStore(Path.Combine(Path.GetDirectoryName(paths.Root)!, TemplatesDirectoryName)),
        async (vm, ct) =>
        {
            var (connection, _, _) = await ConnectAgentAsync(vm, vm.SandboxId, TimeSpan.FromSeconds(Math.Max(5, vm.BootTimeoutSeconds)), loggerFactory, ct);
            await connection.DisposeAsync();
        });

    /// <summary>Connects to the guest agent and waits for its answer to Check; a VM that dies or a silent agent is a
    /// <see cref="SandboxException"/> naming the console's last lines.</summary>
    private static async Task<(TtrpcClient Connection, AgentClient Agent, ShimV2.Agent.Protocol.V1.CheckResponse Health)> ConnectAgentAsync(
        QemuVm vm, string sandboxId, TimeSpan deadline, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        using var boot = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        boot.CancelAfter(deadline);
        TtrpcClient? connection = null;
        try
        {
            var stream = await vm.ConnectAgentAsync(boot.Token);
            connection = new TtrpcClient(stream, loggerFactory.CreateLogger<TtrpcClient>());
            var agent = new AgentClient(connection);
            var check = agent.CheckAsync(new ShimV2.Agent.Protocol.V1.CheckRequest(), null, boot.Token);
            var first = await Task.WhenAny(check, vm.Exited, Task.Delay(Timeout.Infinite, boot.Token));
            if (first == check && check.IsFaulted)
            {
                // A guest that dies (panic, reset) drops the agent channel before QEMU's exit is seen: give the
                // exit a moment to arrive, so the user gets the console's reason rather than a socket error.
                await vm.Exited.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                if (!vm.Exited.IsCompleted)
                {
                    throw new SandboxException(
                        $"lost the guest agent while booting ({check.Exception!.InnerException!.Message}); console log: {vm.ConsoleLogPath}{ConsoleTail(vm)}");
                }

                first = vm.Exited;
            }

            if (first == vm.Exited)
            {
                throw new SandboxException($"VM exited while booting; console log: {vm.ConsoleLogPath}{ConsoleTail(vm)}");
            }

            if (first != check)
            {
                throw new SandboxException(
                    $"guest agent of {sandboxId} did not answer within {deadline.TotalSeconds:0}s; console log: {vm.ConsoleLogPath}{ConsoleTail(vm)}");
            }

            return (connection, agent, await check);
        }
        catch (Exception e)
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }

            if (e is OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                throw new SandboxException($"guest agent of {sandboxId} did not answer within {deadline.TotalSeconds:0}s; console log: {vm.ConsoleLogPath}{ConsoleTail(vm)}");
            }

            throw;
        }
    }

    public SandboxSize Size { get; private set; }

    public SandboxSize BootSize { get; }

    public async Task<SandboxSize> GrowAsync(SandboxSize wanted, CancellationToken cancellationToken)
    {
        await _resize.WaitAsync(cancellationToken);
        try
        {
            var target = new SandboxSize(
                Math.Min(wanted.Vcpus, _config.EffectiveMaxVCpus), Math.Min(wanted.MemoryMiB, _config.EffectiveMaxMemoryMiB));
            if (target.Vcpus < wanted.Vcpus || target.MemoryMiB < wanted.MemoryMiB)
            {
                LogCapped(_logger, Id, wanted.Vcpus, wanted.MemoryMiB, target.Vcpus, target.MemoryMiB);
            }

            if (target.Vcpus > Size.Vcpus)
            {
                var added = target.Vcpus - Size.Vcpus;
                var result = await _vm.HotplugVcpusAsync(added, cancellationToken);
                Size = Size with { Vcpus = result.Vcpus };
                await Agent.OnlineCpuMemAsync(
                    new ShimV2.Agent.Protocol.V1.OnlineCpuMemRequest { NbCpus = (uint)added, CpuOnly = true }, null, cancellationToken);
            }

            if (target.MemoryMiB > Size.MemoryMiB)
            {
                var result = await _vm.HotplugMemoryAsync(target.MemoryMiB - Size.MemoryMiB, cancellationToken);
                Size = Size with { MemoryMiB = result.TotalMiB };
                await Agent.OnlineCpuMemAsync(new ShimV2.Agent.Protocol.V1.OnlineCpuMemRequest(), null, cancellationToken);
            }

            LogSize(_logger, Id, Size.Vcpus, Size.MemoryMiB);
            return Size;
        }
        finally
        {
            _resize.Release();
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        if (_portForward is not null)
        {
            await _portForward.DisposeAsync();
        }

        try
        {
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            bounded.CancelAfter(TimeSpan.FromSeconds(2));
            await Agent.DestroySandboxAsync(new ShimV2.Agent.Protocol.V1.DestroySandboxRequest(), null, bounded.Token);
        }
        catch (Exception e) when (e is TtrpcException or OperationCanceledException)
        {
            LogAgentGone(_logger, Id, e.Message);
        }

        // After DestroySandbox, so what it logged in the guest reaches containerd's log too.
        await _agentLog.StopAsync();
        await _connection.DisposeAsync();
        await _vm.StopAsync(TimeSpan.FromSeconds(3), cancellationToken);
        Unwire(_network, _logger, Id);
        await LeaveHostCgroupAsync(HostCgroup);
        RemoveHostState(Paths);
        LogVmStopped(_logger, Id);
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None);

    /// <summary>
    /// Ends a VM whose guest stopped answering: QMP quit (a stopped QEMU does not answer it either), SIGKILL after
    /// the grace. The agent connection is closed with it, so every waiting call (exits, output) ends and each
    /// process is reported exited; the host state stays for the containers' Delete.
    /// </summary>
    public async Task TerminateVmAsync(string reason)
    {
        LogTerminating(_logger, Id, reason);
        await _vm.StopAsync(TimeSpan.FromSeconds(3), CancellationToken.None);
        _connection.Abort(new IOException($"the VM was stopped: {reason}"));
    }

    /// <summary>Unmounts whatever is left in the share and removes the sandbox directory.</summary>
    internal static void RemoveHostState(SandboxPaths paths)
    {
        if (!Directory.Exists(paths.Root))
        {
            return;
        }

        MountTable.UnmountAllUnder(paths.Root);
        MountTable.RemoveTree(paths.Root);
    }

    private static PodNetwork? ScanNetwork(SandboxLaunchRequest request, ILogger logger)
    {
        if (request.NetworkNamespace is not { } path)
        {
            return null;
        }

        var network = Wire(() => PodNetwork.Scan(path), $"read the pod network namespace {path}");
        LogNetwork(logger, request.SandboxId, path, network.Interfaces.Count == 0 ? "no interface with an address: the VM gets loopback only" : network.ToString());
        return network;
    }

    private static void Wire(Action work, string what) => Wire(() =>
    {
        work();
        return true;
    }, what);

    private static T Wire<T>(Func<T> work, string what)
    {
        try
        {
            return work();
        }
        catch (NetlinkException e)
        {
            throw new SandboxException($"cannot {what}: {e.Message}");
        }
    }

    private static void Unwire(PodNetwork? network, ILogger logger, string sandboxId)
    {
        if (network is not { Interfaces.Count: > 0 })
        {
            return;
        }

        try
        {
            network.Disconnect();
        }
        catch (NetlinkException e)
        {
            LogUnwireFailed(logger, sandboxId, e.Message);
        }
    }

    private static string ConsoleTail(QemuVm vm) => vm.ConsoleTail() is { } tail ? $" (console: {tail})" : string.Empty;

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: QEMU started, pid {Pid}, agent over {Transport}")]
    private static partial void LogVmStarted(ILogger logger, string sandboxId, int pid, AgentTransportKind transport);

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: agent {AgentVersion} ready, guest kernel {Kernel}")]
    private static partial void LogAgentReady(ILogger logger, string sandboxId, string kernel, string agentVersion);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: the guest restored from VM template {Key} did not answer ({Reason}); discarding the template and booting cold")]
    private static partial void LogRestoredGuestSilent(ILogger logger, string sandboxId, string key, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "sandbox {SandboxId}: launch failed: {Reason}")]
    private static partial void LogLaunchFailed(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: agent did not take DestroySandbox: {Reason}")]
    private static partial void LogAgentGone(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: containers ask for {Vcpus} vCPUs / {MemoryMiB} MiB, the config allows {MaxVcpus} / {MaxMemoryMiB} MiB")]
    private static partial void LogCapped(ILogger logger, string sandboxId, int vcpus, int memoryMiB, int maxVcpus, int maxMemoryMiB);

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: VM now has {Vcpus} vCPUs and {MemoryMiB} MiB")]
    private static partial void LogSize(ILogger logger, string sandboxId, int vcpus, int memoryMiB);

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: network namespace {Path}: {Network}")]
    private static partial void LogNetwork(ILogger logger, string sandboxId, string path, string network);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: could not remove the tc redirects from the pod's interfaces: {Reason}")]
    private static partial void LogUnwireFailed(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "sandbox {SandboxId}: stopping the VM: {Reason}")]
    private static partial void LogTerminating(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: VM stopped, host state removed")]
    private static partial void LogVmStopped(ILogger logger, string sandboxId);
}

/// <summary>A sandbox that could not be started; the message is one line for the user.</summary>
public sealed class SandboxException(string message) : Exception(message);

/// <summary>Loads the hypervisor config and launches QEMU sandboxes.</summary>
public sealed class QemuSandboxLauncher(ILoggerFactory loggerFactory) : ISandboxLauncher
{
    public async Task<ISandbox> LaunchAsync(SandboxLaunchRequest request, CancellationToken cancellationToken)
    {
        var config = HypervisorConfigLoader.Load(request.ConfigPath);
        return await QemuSandbox.LaunchAsync(request, config, loggerFactory, cancellationToken);
    }
}
