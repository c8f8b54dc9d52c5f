using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ShimV2.Hypervisor.Qemu;
using ShimV2.Hypervisor.Virtiofs;
using ShimV2.Transport;

namespace ShimV2.Hypervisor;

/// <summary>
/// One QEMU process running one sandbox's guest. <see cref="StartAsync(VmSpec, ILoggerFactory, CancellationToken)"/>
/// returns once QMP answers and the VM runs; the guest may still be booting (dial the agent with
/// <see cref="ConnectAgentAsync"/>). Always end with <see cref="StopAsync"/> or <see cref="DisposeAsync"/>.
/// </summary>
public sealed partial class QemuVm : IAsyncDisposable
{
    /// <summary>How often boot attempts are made when QEMU refuses a vsock CID that another VM holds.</summary>
    internal const int MaxCidAttempts = 5;

    internal static readonly TimeSpan ConnectRetryDelay = TimeSpan.FromMilliseconds(20);
    internal static readonly TimeSpan DisposeGrace = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan ReapTimeout = TimeSpan.FromSeconds(30);

    private readonly VmSpec spec;
    private readonly HostResolution host;
    private readonly ILogger logger;
    private readonly string commandLineText;
    private readonly object gate = new();
    private readonly TaskCompletionSource exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource killNow = new();
    private readonly bool frozen;
    private QemuProcess? process;
    private VirtiofsDaemon? virtiofsd;
    private QmpClient? qmp;
    private Task exitMonitor = Task.CompletedTask;
    private Task? stopTask;
    private VmState state = VmState.Created;
    private bool stopRequested;
    private string? shutdownReason;

    private QemuVm(VmSpec spec, HostResolution host, uint? guestCid, ILogger logger, KvmStandIn? standIn)
    {
        this.spec = spec;
        this.host = host;
        this.logger = logger;
        GuestCid = guestCid;
        Paths = new VmPaths(spec.WorkDirectory);
        var standingIn = standIn is not null && host.Accelerator == AcceleratorKind.Kvm;
        frozen = standingIn && standIn!.Frozen;
        var args = QemuCommandLine.Args(QemuCommandLine.Fragments(spec, standingIn ? host with { Accelerator = AcceleratorKind.Tcg } : host, guestCid));
        CommandLine = frozen ? [.. args, "-S"] : args;
        commandLineText = string.Join(' ', CommandLine);
    }

    public string SandboxId => spec.SandboxId;

    public int Pid => process?.Pid ?? 0;

    public VmState State
    {
        get
        {
            lock (gate)
            {
                return state;
            }
        }
    }

    public string ConsoleLogPath => Paths.ConsoleLog;

    /// <summary>The config's boot timeout, for callers that wait on the guest.</summary>
    public int BootTimeoutSeconds => spec.Config.BootTimeoutSeconds;

    public VmPaths Paths { get; }

    public AgentTransportKind AgentTransport => host.Transport;

    public AcceleratorKind Accelerator => host.Accelerator;

    /// <summary>The guest's vsock CID; null with virtio-serial.</summary>
    public uint? GuestCid { get; }

    /// <summary>The arguments QEMU was started with (after the executable).</summary>
    public IReadOnlyList<string> CommandLine { get; }

    /// <summary>When QEMU's process was started (<see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> ticks,
    /// as <see cref="TimeProvider.System"/> counts); 0 before. For boot timelines.</summary>
    public long SpawnedAt { get; private set; }

    /// <summary>When QMP first reported the VM running (Stopwatch ticks); 0 before.</summary>
    public long QmpReadyAt { get; private set; }

    /// <summary>QEMU got as far as answering on QMP: it took its command line, devices and backends (the taps) and
    /// a failure after that is the guest's or the migration's.</summary>
    internal bool Answered { get; private set; }

    public QmpClient Qmp => qmp ?? throw new InvalidOperationException("qmp is not connected");

    /// <summary>The share is served by a virtiofsd (sharedFs virtio-fs), so guest RAM is a shared memfd.</summary>
    public bool UsesVirtioFs => spec.SharedDirectory is not null && spec.Config.SharedFs == "virtio-fs";

    /// <summary>The virtiofsd's pid while it runs (sharedFs virtio-fs); 0 otherwise.</summary>
    public int VirtiofsdPid => virtiofsd is { Exited.IsCompleted: false } d ? d.Pid : 0;

    /// <summary>Completes when the QEMU process has exited and was reaped. Never faults.</summary>
    public Task Exited => exited.Task;

    /// <summary>QEMU's exit code once <see cref="Exited"/> completed (128 + signal when killed by one).</summary>
    public int? ExitCode { get; private set; }

    /// <summary>Why QEMU exited, for logs: the SHUTDOWN reason (guest-shutdown, host-qmp-quit, guest-reset, ...),
    /// else the exit code and QEMU's last error line.</summary>
    public string? ExitReason { get; private set; }

    /// <summary>Validates the config, picks the accelerator, starts QEMU and waits until QMP reports the VM running.
    /// A KVM boot not yet known to work is watched until the guest shows a sign of life (see
    /// <see cref="AcceleratorDecision"/>); under "auto" a silent one is replaced by a TCG boot.</summary>
    /// <exception cref="HypervisorConfigException">A config value or path is wrong, or accelerator is kvm and KVM cannot run the guest (the message names it).</exception>
    /// <exception cref="HypervisorException">QEMU could not start or died while booting (the message carries QEMU's reason).</exception>
    public static Task<QemuVm> StartAsync(VmSpec spec, ILoggerFactory loggerFactory, CancellationToken ct) =>
        StartAsync(spec, loggerFactory, VmHost.Default, ct);

    internal static Task<QemuVm> StartAsync(VmSpec spec, ILoggerFactory loggerFactory, IHostProbe probe, CancellationToken ct) =>
        StartAsync(spec, loggerFactory, VmHost.Default with { Probe = probe }, ct);

    internal static async Task<QemuVm> StartAsync(VmSpec spec, ILoggerFactory loggerFactory, VmHost vmHost, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        ArgumentNullException.ThrowIfNull(vmHost);
        HypervisorConfigValidator.Validate(spec.Config);
        HypervisorConfigValidator.ValidatePaths(spec.Config);
        QemuCommandLine.ValidateSpec(spec);
        var decision = vmHost.Decide(spec.Config, out var verdictKey);
        if (decision.FirstAttempt is not { } accelerator)
        {
            throw HypervisorConfigValidator.Error(spec.Config, decision.Reason, "accelerator");
        }

        var transport = HostResolution.ResolveTransport(spec.Config, vmHost.Probe);
        var logger = loggerFactory.CreateLogger<QemuVm>();
        try
        {
            // Owner only: the QMP and agent sockets and the console log QEMU creates there.
            PrivateDirectory.Create(spec.WorkDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HypervisorException($"cannot create work directory {spec.WorkDirectory}: {e.Message}", e);
        }

        if (!decision.WatchesForLife)
        {
            if (vmHost.Templates is { } templates
                && await TryStartFromTemplateAsync(spec, new HostResolution(accelerator, transport), templates, vmHost, logger, ct) is { } restored)
            {
                LogAccelerator(logger, LogLevel.Information, spec.SandboxId, accelerator, decision.Reason);
                return restored;
            }

            var vm = await BootWithFreeCidAsync(spec, new HostResolution(accelerator, transport), vmHost, logger, ct);
            LogAccelerator(logger, LogLevel.Information, spec.SandboxId, accelerator, decision.Reason);
            return vm;
        }

        return await BootWatchedKvmAsync(spec, decision, transport, vmHost, verdictKey, logger, ct);
    }

    /// <summary>Boots under KVM and waits for the guest's first console line. Without one (or when QEMU cannot
    /// start with KVM) the attempt is stopped and, under "auto", the VM boots again under TCG; either way the
    /// verdict is remembered for this host boot, kernel and QEMU. Exactly one log line says what was chosen.</summary>
    private static async Task<QemuVm> BootWatchedKvmAsync(
        VmSpec spec, AcceleratorDecision decision, AgentTransportKind transport, VmHost vmHost, KvmVerdictKey? key, ILogger logger, CancellationToken ct)
    {
        var config = spec.Config;
        var kind = AcceleratorDecision.Describe(vmHost.Probe.LoadedKvmModules);
        var orFail = decision.Plan == AcceleratorPlan.TryKvmElseFail;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        QemuVm kvm;
        try
        {
            kvm = await BootWithFreeCidAsync(spec, new HostResolution(AcceleratorKind.Kvm, transport), vmHost, logger, ct);
        }
        catch (QemuBootFailedException e) when (!e.GuestCidInUse)
        {
            var why = $"qemu could not start the guest with {kind}: {e.Message}";
            if (orFail)
            {
                throw HypervisorConfigValidator.Error(config, $"accelerator is kvm but {why}", "accelerator");
            }

            var tcg = await BootWithFreeCidAsync(spec, new HostResolution(AcceleratorKind.Tcg, transport), vmHost, logger, ct);

            // Remembered only now: a failure TCG shares (a bad device, a missing tap) says nothing about KVM.
            Remember(vmHost, key, new KvmVerdict(false, why), logger);
            LogAccelerator(logger, LogLevel.Warning, spec.SandboxId, AcceleratorKind.Tcg, $"{why}; using TCG");
            return tcg;
        }

        GuestLife life;
        try
        {
            life = await GuestSignOfLife.WaitAsync(kvm.ConsoleLogPath, kvm.Exited, TimeSpan.FromSeconds(config.KvmProbeSeconds), ct);
        }
        catch (OperationCanceledException)
        {
            await kvm.DisposeAsync();
            throw;
        }

        if (life == GuestLife.Seen)
        {
            Remember(vmHost, key, new KvmVerdict(true, $"{kind} runs this guest kernel"), logger);
            var seen = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{kind}: the guest showed a sign of life after {clock.Elapsed.TotalSeconds:0.0} s (remembered for this host boot)");
            LogAccelerator(logger, LogLevel.Information, spec.SandboxId, AcceleratorKind.Kvm, seen);
            return kvm;
        }

        await kvm.DisposeAsync();
        var reason = life == GuestLife.Silent
            ? $"the guest showed no sign of life under {kind} within {config.KvmProbeSeconds} s"
            : $"the guest stopped under {kind} before showing a sign of life ({kvm.ExitReason})";
        kvm.KeepConsoleAs("console.kvm.log");

        // A guest that stopped by itself may have failed for its own reasons: only silence convicts KVM.
        if (life == GuestLife.Silent)
        {
            Remember(vmHost, key, new KvmVerdict(false, reason), logger);
        }

        if (orFail)
        {
            throw HypervisorConfigValidator.Error(config, $"accelerator is kvm but {reason}", "accelerator");
        }

        var fallback = await BootWithFreeCidAsync(spec, new HostResolution(AcceleratorKind.Tcg, transport), vmHost, logger, ct);
        LogAccelerator(logger, LogLevel.Warning, spec.SandboxId, AcceleratorKind.Tcg, $"{reason}; using TCG");
        return fallback;
    }

    private static async Task<QemuVm> BootWithFreeCidAsync(VmSpec spec, HostResolution host, VmHost vmHost, ILogger logger, CancellationToken ct)
    {
        var rejected = new HashSet<uint>();
        var firstCid = VsockCidAllocator.Start(spec.SandboxId);
        for (var attempt = 1; ; attempt++)
        {
            uint? cid = host.Transport == AgentTransportKind.Vsock ? VsockCidAllocator.Pick(firstCid, vmHost.Probe, rejected) : null;
            var vm = new QemuVm(spec, host, cid, logger, vmHost.StandIn);
            try
            {
                await vm.BootAsync(ct);
                return vm;
            }
            catch (QemuBootFailedException e) when (cid is { } taken && e.GuestCidInUse && attempt < MaxCidAttempts)
            {
                LogCidInUse(logger, spec.SandboxId, taken);
                rejected.Add(taken);
            }
        }
    }

    private static void Remember(VmHost vmHost, KvmVerdictKey? key, KvmVerdict verdict, ILogger logger)
    {
        if (key is not null && vmHost.Cache.Write(key, verdict) is { } error)
        {
            LogVerdictNotKept(logger, error);
        }
    }

    /// <summary>Keeps this attempt's console for post-mortems under another name (the next attempt rewrites console.log).</summary>
    private void KeepConsoleAs(string fileName)
    {
        try
        {
            File.Move(Paths.ConsoleLog, Path.Combine(spec.WorkDirectory, fileName), overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogDeleteFailed(logger, Paths.ConsoleLog, e.Message);
        }
    }

    /// <summary>Opens the host side of the guest channel, retrying until the guest accepts or <paramref name="ct"/> fires.
    /// Vsock: (<see cref="GuestCid"/>, <see cref="GuestChannel.VsockPort"/>). Virtio-serial: &lt;WorkDirectory&gt;/agent.sock
    /// (QEMU serves one connection at a time).</summary>
    public async Task<Stream> ConnectAgentAsync(CancellationToken ct)
    {
        var attempts = 0;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (Exited.IsCompleted || stopRequested)
            {
                var console = ConsoleTail();
                throw new HypervisorException(
                    $"vm {SandboxId} is not running ({ExitReason ?? State.ToString()}): cannot connect to the guest channel{(console is null ? "" : "; console: " + console)}");
            }

            attempts++;
            var (socket, endpoint) = host.Transport == AgentTransportKind.Vsock
                ? (VsockEndPoint.CreateSocket(), (System.Net.EndPoint)new VsockEndPoint(GuestCid!.Value, GuestChannel.VsockPort))
                : (new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), new UnixDomainSocketEndPoint(Paths.AgentSocket));
            try
            {
                await socket.ConnectAsync(endpoint, ct);
                LogAgentConnected(logger, SandboxId, endpoint, attempts);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                if (attempts == 1 || attempts % 100 == 0)
                {
                    LogAgentRetry(logger, SandboxId, endpoint, e.SocketErrorCode);
                }
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            await Task.WhenAny(Task.Delay(host.Transport == AgentTransportKind.Vsock ? ConnectRetryDelay * 5 : ConnectRetryDelay, ct), Exited);
        }
    }

    /// <summary>Pauses the guest's vCPUs (QMP stop). No-op when already paused.</summary>
    public async Task PauseAsync(CancellationToken ct)
    {
        if (Require(VmAction.Pause) == VmActionVerdict.AlreadyDone)
        {
            return;
        }

        await Qmp.ExecuteAsync(new Stop(), ct);
        Transition(VmState.Paused);
    }

    /// <summary>Resumes the guest's vCPUs (QMP cont). No-op when already running.</summary>
    public async Task ResumeAsync(CancellationToken ct)
    {
        if (Require(VmAction.Resume) == VmActionVerdict.AlreadyDone)
        {
            return;
        }

        await Qmp.ExecuteAsync(new Cont(), ct);
        Transition(VmState.Running);
    }

    /// <summary>QMP quit, waits up to <paramref name="grace"/> for QEMU to exit, then SIGKILL; reaps it and removes
    /// the sockets and pid file (console.log stays). Idempotent: later calls wait for the first.
    /// Cancelling <paramref name="ct"/> cuts the grace short (QEMU is killed and reaped, then the call throws).</summary>
    public async Task StopAsync(TimeSpan grace, CancellationToken ct)
    {
        Task task;
        lock (gate)
        {
            stopRequested = true;
            task = stopTask ??= Task.Run(() => StopCoreAsync(grace), CancellationToken.None);
        }

        using (ct.Register(static s => CancelQuietly((CancellationTokenSource)s!), killNow))
        {
            await task;
        }

        ct.ThrowIfCancellationRequested();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(DisposeGrace, CancellationToken.None);
        process?.Dispose();
    }

    private static void CancelQuietly(CancellationTokenSource source)
    {
        try
        {
            source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Stop already finished.
        }
    }

    private async Task BootAsync(CancellationToken ct)
    {
        var config = spec.Config;
        lock (gate)
        {
            VmStateMachine.Require(state, VmAction.Boot, SandboxId);
            TransitionLocked(VmState.Starting);
        }

        DeleteRuntimeFiles();
        LogStarting(logger, config.Debug ? LogLevel.Information : LogLevel.Debug, SandboxId, config.QemuPath, commandLineText);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(config.BootTimeoutSeconds));
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
        try
        {
            if (UsesVirtioFs)
            {
                // Per boot attempt: virtiofsd serves one QEMU connection and leaves when it closes.
                var binary = VirtiofsdLocator.Resolve(config);
                virtiofsd = await VirtiofsDaemon.StartAsync(
                    binary, new VirtiofsdArguments(binary.Flavor, Paths.VirtiofsSocket, spec.SharedDirectory!, config.Debug), spec.WorkDirectory, logger, linked.Token);
            }

            process = QemuProcess.Start(config.QemuPath, CommandLine, spec.WorkDirectory, logger, config.Debug, spec.NetworkNamespace);
            SpawnedAt = System.Diagnostics.Stopwatch.GetTimestamp();
            exitMonitor = MonitorExitAsync(process);
            RecordIdentity(process.Pid);
            qmp = await ConnectQmpAsync(process, linked.Token);
            Answered = true;
            qmp.EventObserver = OnQmpEvent;
            if (spec.Template is { StatePath: { } statePath })
            {
                await RestoreStateAsync(statePath, linked.Token);
            }

            var status = await qmp.ExecuteAsync(new QueryStatus(), linked.Token);
            if (!status.Running && !(frozen && status.Status == "prelaunch"))
            {
                throw new HypervisorException($"qemu is up but the vm is {status.Status}, not running");
            }

            QmpReadyAt = System.Diagnostics.Stopwatch.GetTimestamp();
            Transition(VmState.Running);
            LogStarted(logger, SandboxId, process.Pid, host.Accelerator, host.Transport, qmp.Greeting.Version);
        }
        catch (Exception e)
        {
            throw await FailBootAsync(e, timeout.IsCancellationRequested, ct);
        }
    }

    /// <summary>Cleans up after a failed boot and returns the exception that explains it.</summary>
    private async Task<Exception> FailBootAsync(Exception error, bool timedOut, CancellationToken ct)
    {
        var exitedByItself = false;
        if (process is not null)
        {
            if (!timedOut && !ct.IsCancellationRequested && !process.HasExited)
            {
                // A broken QMP connection usually means QEMU is on its way out; let it say why.
                await Task.WhenAny(process.Exited, Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None));
            }

            exitedByItself = process.HasExited;
            await process.KillAndReapAsync();
        }

        if (qmp is not null)
        {
            await qmp.DisposeAsync();
        }

        await exitMonitor;
        await StopVirtiofsdAsync();
        DeleteRuntimeFiles();
        Transition(VmState.Failed);

        var reason = process is null ? null : await process.FailureReasonAsync();
        var console = ConsoleTail();
        var consoleText = console is null ? "" : $"; console: {console}";
        Exception result;
        if (exitedByItself && process is not null)
        {
            var code = process.Exited.Result;
            result = new QemuBootFailedException(
                $"qemu exited during boot (exit code {code}): {reason ?? "no message on stderr"}{consoleText}",
                error,
                process.StderrTail.Any(l => l.Contains("unable to set guest cid", StringComparison.Ordinal)));
        }
        else if (ct.IsCancellationRequested)
        {
            result = new OperationCanceledException($"boot of vm {SandboxId} cancelled", error, ct);
        }
        else if (timedOut)
        {
            result = new HypervisorException(
                $"qemu did not come up within {spec.Config.BootTimeoutSeconds} s (qmp socket {Paths.QmpSocket}){(reason is null ? "" : "; last qemu message: " + reason)}{consoleText}",
                error);
        }
        else
        {
            result = error as HypervisorException ?? new HypervisorException($"qemu boot failed: {error.Message}", error);
        }

        LogBootFailed(logger, SandboxId, result.Message);
        process?.Dispose();
        return result;
    }

    private async Task<QmpClient> ConnectQmpAsync(QemuProcess qemu, CancellationToken ct)
    {
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (qemu.HasExited)
            {
                throw new QmpConnectionClosedException("qemu exited before qmp was up");
            }

            if (File.Exists(Paths.QmpSocket))
            {
                try
                {
                    var client = await QmpClient.ConnectAsync(Paths.QmpSocket, logger, ct);

                    // QEMU has made every chardev by the time QMP answers.
                    PrivateDirectory.RestrictFiles(Paths.QmpSocket, Paths.AgentSocket, Paths.ConsoleLog);
                    return client;
                }
                catch (SocketException)
                {
                    // Bound but not yet listening.
                }
            }

            await Task.WhenAny(Task.Delay(ConnectRetryDelay, ct), qemu.Exited);
        }
    }

    private async Task MonitorExitAsync(QemuProcess qemu)
    {
        var code = await qemu.Exited;
        string reason;
        bool unexpected;
        lock (gate)
        {
            unexpected = !stopRequested;
        }

        // Read before the exit is announced: whoever waits on Exited may remove the console with the sandbox.
        var panic = unexpected ? GuestPanic.FindInConsole(Paths.ConsoleLog) : null;
        if (panic is not null)
        {
            LogGuestPanic(logger, SandboxId, panic);
        }

        lock (gate)
        {
            ExitCode = code;
            reason = shutdownReason ?? (code > 128 ? $"killed by signal {code - 128}" : $"exit code {code}");
            if (panic is not null)
            {
                reason = $"guest kernel panic: {panic} ({reason})";
            }

            ExitReason = reason;
            if (!stopRequested && state != VmState.Starting)
            {
                var clean = code == 0 && shutdownReason is not ("guest-reset" or "guest-panic");
                TransitionLocked(clean ? VmState.Stopped : VmState.Failed);
            }
        }

        LogExited(logger, SandboxId, qemu.Pid, code, reason);
        exited.TrySetResult();
    }

    private async Task StopCoreAsync(TimeSpan grace)
    {
        try
        {
            if (process is null)
            {
                Transition(VmState.Stopped);
                return;
            }

            lock (gate)
            {
                if (state is VmState.Starting or VmState.Running or VmState.Paused)
                {
                    TransitionLocked(VmState.Stopping);
                }
            }

            using var graceCts = CancellationTokenSource.CreateLinkedTokenSource(killNow.Token);
            graceCts.CancelAfter(grace);
            if (!process.HasExited && qmp is { Completion.IsCompleted: false })
            {
                try
                {
                    await qmp.ExecuteAsync(new Quit(), graceCts.Token);
                }
                catch (Exception e) when (e is HypervisorException or OperationCanceledException or ObjectDisposedException)
                {
                    // QEMU often exits before the reply gets out.
                    LogQuitNoReply(logger, SandboxId, e.Message);
                }
            }

            try
            {
                await process.Exited.WaitAsync(graceCts.Token);
            }
            catch (OperationCanceledException)
            {
                LogKilling(logger, SandboxId, process.Pid, grace);
                process.Kill();
            }

            try
            {
                await process.Exited.WaitAsync(ReapTimeout);
            }
            catch (TimeoutException)
            {
                LogNotReaped(logger, SandboxId, process.Pid);
            }

            if (qmp is not null)
            {
                await qmp.DisposeAsync();
            }

            await StopVirtiofsdAsync();
            DeleteRuntimeFiles();
            await exitMonitor;
            Transition(VmState.Stopped);
        }
        catch (Exception e)
        {
            LogStopFailed(logger, SandboxId, e);
            process?.Kill();
            await StopVirtiofsdAsync();
            Transition(VmState.Failed);
        }
    }

    /// <summary>After QEMU is gone virtiofsd's connection is closed and it leaves by itself; the grace covers that.</summary>
    private async Task StopVirtiofsdAsync()
    {
        var daemon = Interlocked.Exchange(ref virtiofsd, null);
        if (daemon is not null)
        {
            await daemon.StopAsync(TimeSpan.FromSeconds(1));
        }
    }

    private void OnQmpEvent(QmpEvent evt)
    {
        switch (evt.Name)
        {
            case QmpEventNames.Stop:
                Transition(VmState.Paused, onlyFrom: VmState.Running);
                break;
            case QmpEventNames.Resume:
                Transition(VmState.Running, onlyFrom: VmState.Paused);
                break;
            case QmpEventNames.Shutdown:
                lock (gate)
                {
                    shutdownReason = evt.HasData && evt.Data.TryGetProperty("reason", out var r) ? r.GetString() : "shutdown";
                    if (state is VmState.Running or VmState.Paused)
                    {
                        TransitionLocked(VmState.Stopping);
                    }
                }

                break;
            case QmpEventNames.GuestPanicked:
                lock (gate)
                {
                    shutdownReason = "guest-panic";
                }

                break;
            default:
                break;
        }
    }

    private VmActionVerdict Require(VmAction action)
    {
        lock (gate)
        {
            return VmStateMachine.Require(state, action, SandboxId);
        }
    }

    private void Transition(VmState to, VmState? onlyFrom = null)
    {
        lock (gate)
        {
            if (onlyFrom is null || state == onlyFrom)
            {
                TransitionLocked(to);
            }
        }
    }

    private void TransitionLocked(VmState to)
    {
        if (state == to)
        {
            return;
        }

        if (!VmStateMachine.CanTransition(state, to))
        {
            // Actions were checked before they ran (Require), so only QEMU's own news can land here: its exit
            // racing a stop, or a STOP event after the guest shut down. The first terminal state stands.
            LogTransitionIgnored(logger, VmStateMachine.IsTerminal(state) ? LogLevel.Debug : LogLevel.Warning, SandboxId, state, to);
            return;
        }

        LogTransition(logger, SandboxId, state, to);
        state = to;
    }

    /// <summary>Process.Start returns after the exec, so /proc shows QEMU itself, not the forked shim.</summary>
    private void RecordIdentity(int pid)
    {
        try
        {
            QemuIdentity.Capture(pid)?.Write(Paths.IdentityFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // `delete` then falls back to the command line and the executable's name.
            LogIdentityNotRecorded(logger, SandboxId, Paths.IdentityFile, e.Message);
        }
    }

    private void DeleteRuntimeFiles()
    {
        foreach (var path in new[] { Paths.QmpSocket, Paths.AgentSocket, Paths.PidFile, Paths.IdentityFile })
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                LogDeleteFailed(logger, path, e.Message);
            }
        }
    }

    [LoggerMessage(Message = "vm {SandboxId}: starting {Qemu} {Args}")]
    private static partial void LogStarting(ILogger logger, LogLevel level, string sandboxId, string qemu, string args);

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: qemu pid {Pid} running ({Accelerator}, agent over {Transport}, qemu {Version})")]
    private static partial void LogStarted(ILogger logger, string sandboxId, int pid, AcceleratorKind accelerator, AgentTransportKind transport, QmpVersion version);

    [LoggerMessage(Message = "vm {SandboxId}: accelerator {Accelerator}: {Reason}")]
    private static partial void LogAccelerator(ILogger logger, LogLevel level, string sandboxId, AcceleratorKind accelerator, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Reason}")]
    private static partial void LogVerdictNotKept(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "vm {SandboxId}: boot failed: {Reason}")]
    private static partial void LogBootFailed(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: vsock cid {Cid} is taken, trying another")]
    private static partial void LogCidInUse(ILogger logger, string sandboxId, uint cid);

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: qemu pid {Pid} exited ({Code}, {Reason})")]
    private static partial void LogExited(ILogger logger, string sandboxId, int pid, int code, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "vm {SandboxId}: guest kernel panic: {Panic}")]
    private static partial void LogGuestPanic(ILogger logger, string sandboxId, string panic);

    [LoggerMessage(Level = LogLevel.Debug, Message = "vm {SandboxId}: {From} -> {To}")]
    private static partial void LogTransition(ILogger logger, string sandboxId, VmState from, VmState to);

    [LoggerMessage(Message = "vm {SandboxId}: ignored transition {From} -> {To}")]
    private static partial void LogTransitionIgnored(ILogger logger, LogLevel level, string sandboxId, VmState from, VmState to);

    [LoggerMessage(Level = LogLevel.Debug, Message = "vm {SandboxId}: quit got no reply: {Reason}")]
    private static partial void LogQuitNoReply(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "vm {SandboxId}: qemu pid {Pid} still running after {Grace}; sending SIGKILL")]
    private static partial void LogKilling(ILogger logger, string sandboxId, int pid, TimeSpan grace);

    [LoggerMessage(Level = LogLevel.Error, Message = "vm {SandboxId}: qemu pid {Pid} not reaped 30 s after SIGKILL")]
    private static partial void LogNotReaped(ILogger logger, string sandboxId, int pid);

    [LoggerMessage(Level = LogLevel.Error, Message = "vm {SandboxId}: stop failed")]
    private static partial void LogStopFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot delete {Path}: {Reason}")]
    private static partial void LogDeleteFailed(ILogger logger, string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "vm {SandboxId}: could not record qemu's identity in {Path}: {Reason}")]
    private static partial void LogIdentityNotRecorded(ILogger logger, string sandboxId, string path, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "vm {SandboxId}: agent channel {EndPoint} connected after {Attempts} attempt(s)")]
    private static partial void LogAgentConnected(ILogger logger, string sandboxId, System.Net.EndPoint endPoint, int attempts);

    [LoggerMessage(Level = LogLevel.Debug, Message = "vm {SandboxId}: agent channel {EndPoint} not ready ({Error}); retrying")]
    private static partial void LogAgentRetry(ILogger logger, string sandboxId, System.Net.EndPoint endPoint, SocketError error);
}

/// <summary>QEMU exited by itself while booting.</summary>
internal sealed class QemuBootFailedException : HypervisorException
{
    public QemuBootFailedException(string message, Exception? inner, bool guestCidInUse)
        : base(message, inner)
    {
        GuestCidInUse = guestCidInUse;
    }

    /// <summary>vhost-vsock refused the guest CID because another VM holds it.</summary>
    public bool GuestCidInUse { get; }
}
