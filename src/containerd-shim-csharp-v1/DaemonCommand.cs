using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ShimV2.Shim;
using ShimV2.Shim.Events;
using ShimV2.Shim.Sandbox;
using ShimV2.Shim.Tasks;
using ShimV2.Ttrpc;

namespace ShimV2.Cli;

/// <summary>
/// The long-lived shim: serves the task API on the socket `start` handed over as fd 3, logs to the bundle's log
/// FIFO, and exits on Shutdown with no container left, on SIGTERM/SIGINT, or when nobody connects.
/// </summary>
internal static partial class DaemonCommand
{
    public const string ConfigPathVariable = "CSHARP_SHIM_CONFIG_PATH";

    private static readonly TimeSpan IdleLimit = TimeSpan.FromSeconds(60);

    public static async Task<int> RunAsync(ShimFlags flags)
    {
        var logPath = Path.Combine(flags.Bundle, "log");
        using var logs = new FifoLoggerProvider(File.Exists(logPath) ? logPath : null, flags.Debug ? LogLevel.Debug : LogLevel.Information);
        using var loggerFactory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(logs));
        var logger = loggerFactory.CreateLogger("shim");

        try
        {
            return await ServeAsync(flags, loggerFactory, logger);
        }
        catch (Exception e)
        {
            LogFatal(logger, e.Message, e);
            return 1;
        }
    }

    private static async Task<int> ServeAsync(ShimFlags flags, ILoggerFactory loggerFactory, ILogger logger)
    {
        AdjustOomScore(logger);
        ShimV2.Shim.Native.FileDescriptors.SetCloseOnExec(DaemonSpawner.ListenFd);
        using var listener = new Socket(new SafeSocketHandle(DaemonSpawner.ListenFd, ownsHandle: true));
        var context = new ShimContext
        {
            Namespace = flags.Namespace,
            ContainerdAddress = flags.Address,
            TtrpcAddress = flags.TtrpcAddress,
            Id = flags.Id,
            PublishBinary = flags.PublishBinary,
            Debug = flags.Debug,
            DefaultConfigPath = Environment.GetEnvironmentVariable(ConfigPathVariable),
        };

        await using var events = new EventPublisher(context.TtrpcAddress, context.Namespace, loggerFactory.CreateLogger<EventPublisher>());
        var service = new TaskService(context, new QemuSandboxLauncher(loggerFactory), new RootfsMounter(), events, loggerFactory);
        await using var server = new TtrpcServer([TaskServiceDefinition.Create(service)], loggerFactory.CreateLogger<TtrpcServer>());

        using var stop = new CancellationTokenSource();
        var signalled = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; signalled.TrySetResult("SIGTERM"); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; signalled.TrySetResult("SIGINT"); });

        LogServing(logger, flags.Socket ?? "fd 3", flags.Id, Environment.ProcessId);
        var serving = server.ServeAsync(listener, stop.Token);
        var idle = WatchIdleAsync(server, service, stop.Token);
        var reason = await Task.WhenAny(service.ShutdownRequested, signalled.Task, idle, serving) switch
        {
            var t when t == service.ShutdownRequested => "shutdown requested",
            var t when t == signalled.Task => signalled.Task.Result,
            var t when t == idle => "nobody connected",
            _ => "listener closed",
        };
        LogStopping(logger, reason);

        using (var grace = new CancellationTokenSource(TimeSpan.FromSeconds(3)))
        {
            // Lets the Shutdown reply reach containerd before the connection goes.
            await server.ShutdownAsync(grace.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await stop.CancelAsync();
        await service.DisposeAsync();
        if (flags.Socket is not null && File.Exists(flags.Socket))
        {
            File.Delete(flags.Socket);
        }

        return 0;
    }

    /// <summary>Exits a shim that nobody talks to and that holds no container (containerd died mid-create).</summary>
    private static async Task WatchIdleAsync(TtrpcServer server, TaskService service, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(5));
        var idleSince = DateTime.UtcNow;
        while (await timer.WaitForNextTickAsync(cancellationToken))
        {
            if (server.ConnectionCount > 0 || service.ContainerCount > 0)
            {
                idleSince = DateTime.UtcNow;
            }
            else if (DateTime.UtcNow - idleSince > IdleLimit)
            {
                return;
            }
        }
    }

    private static void AdjustOomScore(ILogger logger)
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable(OomScore.ParentScoreVariable), out var containerdScore))
        {
            return;
        }

        if (OomScore.AdjustSelf(containerdScore) is { } error)
        {
            LogOomScoreFailed(logger, containerdScore + 1, error);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "serving task API on {Socket} for {Id} (pid {Pid})")]
    private static partial void LogServing(ILogger logger, string socket, string id, int pid);

    [LoggerMessage(Level = LogLevel.Information, Message = "shim exiting: {Reason}")]
    private static partial void LogStopping(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot set oom_score_adj to {Score}: {Reason}")]
    private static partial void LogOomScoreFailed(ILogger logger, int score, string reason);

    [LoggerMessage(Level = LogLevel.Critical, Message = "shim failed: {Reason}")]
    private static partial void LogFatal(ILogger logger, string reason, Exception exception);
}
