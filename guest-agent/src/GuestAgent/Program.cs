using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ShimV2.GuestAgent.Logging;
using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.PortForward;
using ShimV2.GuestAgent.Service;
using ShimV2.GuestAgent.Transport;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent;

/// <summary>
/// The guest agent: exec'd by the image's /init as PID 1. Reaps every process of the VM (one waitpid(-1)
/// thread), serves csharp.agent.v1.Agent over virtio-serial or vsock, and powers the VM off when it stops
/// (PID 1 must never exit: the kernel would panic).
/// </summary>
internal static partial class Program
{
    /// <summary>How long the host gets to close its connection after DestroySandbox before the VM powers off.</summary>
    private static readonly TimeSpan DisconnectGrace = TimeSpan.FromSeconds(2);

    /// <summary>Pool threads made on demand without the pool's starvation delay (threads cost their stack only once
    /// made; the agent rarely blocks more than a few at once).</summary>
    private const int MinPoolThreads = 16;

    private static StderrLoggerProvider? s_logProvider;
    private static ILogger? s_logger;

    public static int Main()
    {
        // A pod's VM often has one vCPU, so the thread pool starts with one thread and adds another only after about
        // half a second of starvation. The agent blocks pool threads in reads (the host connection while idle, a
        // starting process's sync pipe, stdin), so without spare threads a container's Start waited 0.5-1 s for one.
        ThreadPool.GetMinThreads(out var workers, out var completionPorts);
        ThreadPool.SetMinThreads(Math.Max(workers, MinPoolThreads), completionPorts);
        var debug = Environment.GetEnvironmentVariable("CSHARP_AGENT_DEBUG") == "1";
        s_logProvider = new StderrLoggerProvider(debug ? LogLevel.Debug : LogLevel.Information);
        // Warnings and errors also wait in a queue for the host (GetLogRecords): the console dies with the pod.
        var logRecords = new LogRecordQueue();
        using var loggerFactory = new LoggerFactory([s_logProvider, new LogRecordCapture(logRecords)]);
        var logger = s_logger = loggerFactory.CreateLogger("agent");
        var isInit = Environment.ProcessId == 1;
        AppDomain.CurrentDomain.UnhandledException += (_, e) =>
        {
            LogFatal(logger, e.ExceptionObject as Exception);
            Stop(isInit, 1);
        };

        var uptime = AgentTransport.Uptime();
        LogStarting(logger, AgentService.Version, Environment.ProcessId, uptime);
        if (Libc.prctl(Libc.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        {
            LogSubreaperFailed(logger, Libc.StrError(Libc.Errno));
        }

        ProcessReaper.Shared.Start();
        // As PID 1, keep running whatever is sent (run by hand, the default handling ends the agent).
        PosixSignalRegistration[] ignored = isInit
            ? [.. new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGHUP, PosixSignal.SIGQUIT }.Select(s => PosixSignalRegistration.Create(s, OnSignal))]
            : [];

        var transport = new AgentTransport(loggerFactory.CreateLogger("transport"));
        var agent = new AgentService(new AgentOptions(), loggerFactory.CreateLogger("service"), () => transport.Active switch
        {
            TransportKind.VirtioSerial => ["virtio-serial"],
            TransportKind.Vsock => ["vsock"],
            _ => [],
        }, logRecords);
        if (isInit)
        {
            agent.PrepareGuest();
        }

        var portForward = new PortForwardService(loggerFactory.CreateLogger("port-forward"));
        // Forwarded connections belong to the host connection that opened them.
        transport.ConnectionEnded += portForward.CloseAll;
        var server = new TtrpcServer([agent.Definition(), portForward.Definition()], loggerFactory.CreateLogger("ttrpc"));
        using var stop = new CancellationTokenSource();
        var serving = transport.RunAsync(server, stop.Token);

        var first = Task.WhenAny(serving, agent.Destroyed).GetAwaiter().GetResult();
        if (first == agent.Destroyed)
        {
            WaitForDisconnect(server);
            LogPoweringOff(logger, "the sandbox was destroyed");
        }
        else
        {
            var reason = serving.Exception?.GetBaseException().Message ?? "the transport stopped";
            LogPoweringOff(logger, reason);
        }

        stop.Cancel();
        GC.KeepAlive(ignored);
        Stop(isInit, 0);
        return 0;
    }

    private static void WaitForDisconnect(TtrpcServer server)
    {
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.ConnectionClosed += (_, _) =>
        {
            if (server.ConnectionCount == 0)
            {
                closed.TrySetResult();
            }
        };
        if (server.ConnectionCount == 0)
        {
            closed.TrySetResult();
        }

        closed.Task.WaitAsync(DisconnectGrace).ContinueWith(_ => { }, TaskScheduler.Default).GetAwaiter().GetResult();
    }

    private static void OnSignal(PosixSignalContext context)
    {
        // Only the host (DestroySandbox) stops the VM.
        context.Cancel = true;
        if (s_logger != null)
        {
            LogSignalIgnored(s_logger, context.Signal);
        }
    }

    /// <summary>Powers the VM off (PID 1), or exits (run by hand for debugging). Does not return.</summary>
    private static void Stop(bool isInit, int exitCode)
    {
        s_logProvider?.Flush(TimeSpan.FromSeconds(2));
        if (isInit)
        {
            Libc.sync();
            Libc.reboot(Libc.LINUX_REBOOT_CMD_POWER_OFF);
            // Still here: never let PID 1 exit.
            Thread.Sleep(Timeout.Infinite);
        }

        Environment.Exit(exitCode);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "csharp-agent {Version} starting as pid {Pid} (uptime {Uptime} s)")]
    private static partial void LogStarting(ILogger logger, string version, int pid, string uptime);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot become a child subreaper: {Reason}")]
    private static partial void LogSubreaperFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Signal} ignored")]
    private static partial void LogSignalIgnored(ILogger logger, PosixSignal signal);

    [LoggerMessage(Level = LogLevel.Information, Message = "powering off: {Reason}")]
    private static partial void LogPoweringOff(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Critical, Message = "unhandled exception: powering off")]
    private static partial void LogFatal(ILogger logger, Exception? exception);
}
