using Microsoft.Extensions.Logging;
using ShimV2.Hypervisor.Qemu;

namespace ShimV2.Hypervisor.Virtiofs;

/// <summary>
/// The virtiofsd of one VM: started before QEMU (which connects to its socket when it starts), ended after QEMU.
/// Its identity is recorded beside the socket, so a `delete` after the shim died finds and stops it as it does
/// QEMU (<see cref="StopOrphan"/>), never a stranger with its pid.
/// </summary>
internal sealed partial class VirtiofsDaemon
{
    public const string IdentityFileName = "virtiofsd.identity";

    private static readonly TimeSpan SocketDeadline = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan ReapTimeout = TimeSpan.FromSeconds(30);

    private readonly QemuProcess process;
    private readonly VirtiofsdArguments arguments;
    private readonly string identityFile;
    private readonly ILogger logger;

    private VirtiofsDaemon(QemuProcess process, VirtiofsdArguments arguments, string identityFile, ILogger logger)
    {
        this.process = process;
        this.arguments = arguments;
        this.identityFile = identityFile;
        this.logger = logger;
    }

    public int Pid => process.Pid;

    public Task<int> Exited => process.Exited;

    /// <summary>Starts virtiofsd and returns once its socket exists (it accepts QEMU from then on).</summary>
    /// <exception cref="HypervisorException">It could not start or exited before its socket appeared (with its reason).</exception>
    public static async Task<VirtiofsDaemon> StartAsync(
        VirtiofsdBinary binary, VirtiofsdArguments arguments, string workDirectory, ILogger logger, CancellationToken ct)
    {
        DeleteQuietly(arguments.SocketPath);
        var identityFile = Path.Combine(workDirectory, IdentityFileName);
        if (logger.IsEnabled(LogLevel.Debug))
        {
            var commandLine = string.Join(' ', arguments.Args);
            LogStarting(logger, binary.Path, commandLine);
        }

        var process = QemuProcess.Start(binary.Path, arguments.Args, workDirectory, logger, arguments.Debug, name: "virtiofsd");
        var daemon = new VirtiofsDaemon(process, arguments, identityFile, logger);
        try
        {
            QemuIdentity.Capture(process.Pid)?.Write(identityFile);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(arguments.SocketPath))
            {
                if (process.HasExited)
                {
                    var reason = await process.FailureReasonAsync();
                    throw new HypervisorException(
                        $"virtiofsd exited at start (exit code {process.Exited.Result}): {reason ?? "no message on stderr"}");
                }

                if (clock.Elapsed > SocketDeadline)
                {
                    throw new HypervisorException($"virtiofsd did not create its socket {arguments.SocketPath} within {SocketDeadline.TotalSeconds:0} s");
                }

                await Task.WhenAny(Task.Delay(PollInterval, ct), process.Exited);
                ct.ThrowIfCancellationRequested();
            }

            PrivateDirectory.RestrictFiles(arguments.SocketPath);
            LogStarted(logger, process.Pid, arguments.SocketPath, arguments.SharedDirectory);
            return daemon;
        }
        catch
        {
            await daemon.StopAsync(TimeSpan.Zero);
            throw;
        }
    }

    /// <summary>
    /// Ends it: it leaves by itself when QEMU closes the socket; otherwise SIGTERM, and SIGKILL after
    /// <paramref name="grace"/>. Reaps it and removes its socket, identity and (C flavor) lock file. Never throws.
    /// </summary>
    public async Task StopAsync(TimeSpan grace)
    {
        // In namespace sandboxing virtiofsd forks: the child serves, the parent waits for it and its end makes the
        // kernel send the child SIGTERM (PR_SET_PDEATHSIG). Both are waited for, so nothing outlives the pod.
        var children = ChildrenOf(process.Pid);
        try
        {
            if (!process.HasExited)
            {
                _ = Native.Kill(process.Pid, 15);
                await Task.WhenAny(process.Exited, Task.Delay(grace));
            }

            if (!process.HasExited)
            {
                LogKilling(logger, process.Pid, grace);
                process.Kill();
            }

            await process.Exited.WaitAsync(ReapTimeout);
            LogExited(logger, process.Pid, process.Exited.Result);
            foreach (var (pid, start) in children)
            {
                if (!OrphanedQemu.Stop(pid, start, grace + TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5)))
                {
                    LogNotReaped(logger, pid);
                }
            }
        }
        catch (TimeoutException)
        {
            LogNotReaped(logger, process.Pid);
        }
        finally
        {
            RemoveFiles(arguments.SocketPath, identityFile);
            process.Dispose();
        }
    }

    /// <summary>
    /// After the shim died: stops the virtiofsd recorded in <paramref name="workDirectory"/> when the process with
    /// that pid is provably it (same start time and executable, serving this directory's socket), then removes its
    /// files. True when none is left running.
    /// </summary>
    public static bool StopOrphan(string workDirectory, TimeSpan grace, TimeSpan killDeadline, string procRoot = "/proc")
    {
        var identityPath = Path.Combine(workDirectory, IdentityFileName);
        var socket = new VmPaths(workDirectory).VirtiofsSocket;
        var recorded = QemuIdentity.Read(identityPath);
        var stopped = true;
        if (recorded is not null && IsOrphan(recorded, socket, procRoot))
        {
            stopped = OrphanedQemu.Stop(recorded.Pid, recorded.StartTime, grace, killDeadline, procRoot);
        }

        if (stopped)
        {
            RemoveFiles(socket, identityPath);
        }

        return stopped;
    }

    /// <summary>The identity check of <see cref="StopOrphan"/>.</summary>
    public static bool IsOrphan(QemuIdentity recorded, string socketPath, string procRoot = "/proc")
    {
        ArgumentNullException.ThrowIfNull(recorded);
        return ProcStat.Read(recorded.Pid, procRoot) is { Zombie: false } stat
            && stat.StartTime == recorded.StartTime
            && QemuIdentity.ReadExecutable(recorded.Pid, procRoot) == recorded.Executable
            && QemuIdentity.ReadCommandLine(recorded.Pid, procRoot) is { } args
            && VirtiofsdArguments.NamesSocket(args, socketPath);
    }

    /// <summary>The live children of <paramref name="parent"/> with their start times (from /proc/&lt;pid&gt;/stat).</summary>
    internal static IReadOnlyList<(int Pid, ulong StartTime)> ChildrenOf(int parent, string procRoot = "/proc")
    {
        var result = new List<(int, ulong)>();
        try
        {
            foreach (var dir in Directory.EnumerateDirectories(procRoot))
            {
                if (!int.TryParse(Path.GetFileName(dir), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid))
                {
                    continue;
                }

                string text;
                try
                {
                    text = File.ReadAllText(Path.Combine(dir, "stat"));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    continue;
                }

                // After the command name's closing ')': state, ppid, ...
                var fields = text[(text.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length > 1 && fields[1] == parent.ToString(System.Globalization.CultureInfo.InvariantCulture)
                    && ProcStat.Parse(text) is { Zombie: false } stat)
                {
                    result.Add((pid, stat.StartTime));
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No /proc to read: the parent's end still sends the child SIGTERM.
        }

        return result;
    }

    /// <summary>Either flavor: the Rust one leaves no lock file, so deleting the C one's name is harmless.</summary>
    private static void RemoveFiles(string socketPath, string identityFile)
    {
        DeleteQuietly(socketPath);
        DeleteQuietly(identityFile);
        DeleteQuietly(VirtiofsdArguments.QemuFlavorLockFile(socketPath));
    }

    private static void DeleteQuietly(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left for the directory's removal.
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "starting virtiofsd {Path} {Args}")]
    private static partial void LogStarting(ILogger logger, string path, string args);

    [LoggerMessage(Level = LogLevel.Information, Message = "virtiofsd pid {Pid} serving {Directory} on {Socket}")]
    private static partial void LogStarted(ILogger logger, int pid, string socket, string directory);

    [LoggerMessage(Level = LogLevel.Information, Message = "virtiofsd pid {Pid} exited ({Code})")]
    private static partial void LogExited(ILogger logger, int pid, int code);

    [LoggerMessage(Level = LogLevel.Warning, Message = "virtiofsd pid {Pid} still running {Grace} after SIGTERM; sending SIGKILL")]
    private static partial void LogKilling(ILogger logger, int pid, TimeSpan grace);

    [LoggerMessage(Level = LogLevel.Error, Message = "virtiofsd pid {Pid} not reaped 30 s after SIGKILL")]
    private static partial void LogNotReaped(ILogger logger, int pid);
}
