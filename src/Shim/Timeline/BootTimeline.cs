using Microsoft.Extensions.Logging;

namespace ShimV2.Shim.Timeline;

/// <summary>The phases of a pod start, as they appear in the log (eng/bench parses <c>phase (\S+) at (\d+) ms</c>).</summary>
public static class BootPhase
{
    public const string QemuSpawned = "qemu-spawned";
    public const string QmpReady = "qmp-ready";
    public const string KernelUp = "kernel-up";

    /// <summary>In place of <see cref="KernelUp"/> when the VM was restored from a template: the guest continued.</summary>
    public const string Restored = "restored";
    public const string AgentReady = "agent-ready";
    public const string SandboxConfigured = "sandbox-configured";
    public const string Created = "created";
    public const string Started = "started";
}

/// <summary>
/// The clock of one pod start or one container's Create: phases are logged as milliseconds since it began, so a
/// benchmark can take medians per phase from containerd's log. Timestamps are <see cref="TimeProvider"/> ticks
/// (for the system provider, <see cref="System.Diagnostics.Stopwatch"/>'s, which the hypervisor layer also uses).
/// </summary>
public sealed partial class BootTimeline
{
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _subject;
    private readonly bool _isSandbox;

    private BootTimeline(TimeProvider time, ILogger logger, string subject, bool isSandbox, long origin)
    {
        _time = time;
        _logger = logger;
        _subject = subject;
        _isSandbox = isSandbox;
        Origin = origin;
    }

    /// <summary>When the timeline began, in <see cref="TimeProvider.GetTimestamp"/> ticks.</summary>
    public long Origin { get; }

    /// <summary>A timeline for the sandbox <paramref name="sandboxId"/>, from <paramref name="origin"/> (ticks of
    /// <paramref name="time"/>, the system's by default) or now.</summary>
    public static BootTimeline ForSandbox(string sandboxId, ILogger logger, long? origin = null, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        return new(time, logger, sandboxId, isSandbox: true, origin ?? time.GetTimestamp());
    }

    /// <summary>A timeline for the container <paramref name="containerId"/>, from <paramref name="origin"/> or now.</summary>
    public static BootTimeline ForContainer(string containerId, ILogger logger, long? origin = null, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        return new(time, logger, containerId, isSandbox: false, origin ?? time.GetTimestamp());
    }

    /// <summary>Milliseconds from <see cref="Origin"/> to <paramref name="timestamp"/> (never negative).</summary>
    public long ElapsedMs(long timestamp) => Math.Max(0, (long)_time.GetElapsedTime(Origin, timestamp).TotalMilliseconds);

    /// <summary>Logs <paramref name="phase"/> as reached now; returns its elapsed milliseconds.</summary>
    public long Mark(string phase) => MarkAt(phase, _time.GetTimestamp());

    /// <summary>Logs <paramref name="phase"/> as reached at <paramref name="timestamp"/>; returns its elapsed milliseconds.</summary>
    public long MarkAt(string phase, long timestamp) => MarkElapsed(phase, ElapsedMs(timestamp));

    /// <summary>Logs <paramref name="phase"/> at an elapsed time computed elsewhere.</summary>
    public long MarkElapsed(string phase, long elapsedMs)
    {
        if (_isSandbox)
        {
            LogSandboxPhase(_logger, _subject, phase, elapsedMs);
        }
        else
        {
            LogContainerPhase(_logger, _subject, phase, elapsedMs);
        }

        return elapsedMs;
    }

    /// <summary>
    /// When the guest kernel's clock started, on this timeline: the host's time of the agent's answer minus the
    /// guest's CLOCK_BOOTTIME in that answer (it starts at 0 in start_kernel's timekeeping_init). The answer's
    /// transit (under a millisecond over virtio-serial) makes it slightly late. Under TCG on an overloaded host the
    /// guest can calibrate its TSC wrongly and its clock then runs fast or slow, so the result is clamped to
    /// [<paramref name="spawnedMs"/>, <paramref name="agentReadyMs"/>]. Null when the agent reported no uptime.
    /// </summary>
    public static long? KernelUpMs(long spawnedMs, long agentReadyMs, ulong guestBootTimeMs) =>
        guestBootTimeMs == 0
            ? null
            : Math.Clamp(agentReadyMs - (long)Math.Min(guestBootTimeMs, long.MaxValue), Math.Min(spawnedMs, agentReadyMs), agentReadyMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: phase {Phase} at {ElapsedMs} ms")]
    private static partial void LogSandboxPhase(ILogger logger, string sandboxId, string phase, long elapsedMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "container {ContainerId}: phase {Phase} at {ElapsedMs} ms")]
    private static partial void LogContainerPhase(ILogger logger, string containerId, string phase, long elapsedMs);
}
