using System.Collections.Concurrent;
using ShimV2.Shim.Bundle;

namespace ShimV2.Shim.Processes;

/// <summary>A container of the pod: its bundle, init process and execs.</summary>
public sealed class Container(string id, string bundle, BundleSpec spec, string rootfsOnHost)
{
    private readonly Lock _oomLock = new();
    private int _oomFromQueueUnmatched;
    private int _oomFromExitUnmatched;
    private InitProcess? _init;

    public string Id { get; } = id;

    /// <summary>Serializes an exec's start with its init's exit: no exec starts once the init's exit is queued,
    /// and the init's exit goes out after every started exec's.</summary>
    internal Lock ExitGate { get; } = new();

    public string Bundle { get; } = bundle;

    public BundleSpec Spec { get; } = spec;

    public InitProcess Init
    {
        get => _init ?? throw new InvalidOperationException($"container {Id} has no init process yet");
        internal set => _init = value;
    }

    /// <summary>Where the rootfs is mounted on the host, inside the sandbox share.</summary>
    public string RootfsOnHost { get; } = rootfsOnHost;

    /// <summary>What this container's limits add to the VM's size (updated by Update).</summary>
    public Sandbox.SandboxSize Needs { get; set; }

    /// <summary>Where this container's Create and Start phases are logged; null: not logged.</summary>
    public Timeline.BootTimeline? Timeline { get; init; }

    public ConcurrentDictionary<string, ExecProcess> Execs { get; } = new(StringComparer.Ordinal);

    public ShimProcess Process(string execId) =>
        execId.Length == 0 ? Init
        : Execs.TryGetValue(execId, out var exec) ? exec
        : throw Errors.ExecNotFound(Id, execId);

    // One OOM kill reaches the shim twice, in either order: as the agent's OOM queue entry and as the exit's
    // "OOM killed". Each side publishes TaskOOM only when the other has not already done so for that kill, and
    // publishes under the lock, so an exit that finds its TaskOOM already sent cannot overtake it.

    /// <summary>The agent's OOM queue reported an OOM of this container: <paramref name="publish"/> runs unless an
    /// exit already brought this kill's TaskOOM.</summary>
    internal void OomFromQueue(Action publish)
    {
        lock (_oomLock)
        {
            if (_oomFromExitUnmatched > 0)
            {
                _oomFromExitUnmatched--;
                return;
            }

            _oomFromQueueUnmatched++;
            publish();
        }
    }

    /// <summary>An exit said "OOM killed": <paramref name="publish"/> runs unless the queue already brought it.</summary>
    internal void OomAtExit(Action publish)
    {
        lock (_oomLock)
        {
            if (_oomFromQueueUnmatched > 0)
            {
                _oomFromQueueUnmatched--;
                return;
            }

            _oomFromExitUnmatched++;
            publish();
        }
    }
}
