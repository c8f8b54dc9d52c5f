using System.Collections.Concurrent;
using ShimV2.Shim.Bundle;

namespace ShimV2.Shim.Processes;

/// <summary>A container of the pod: its bundle, init process and execs.</summary>
public sealed class Container(string id, string bundle, BundleSpec spec, ShimProcess init, string rootfsOnHost)
{
    public string Id { get; } = id;

    public string Bundle { get; } = bundle;

    public BundleSpec Spec { get; } = spec;

    public ShimProcess Init { get; } = init;

    /// <summary>Where the rootfs is mounted on the host, inside the sandbox share.</summary>
    public string RootfsOnHost { get; } = rootfsOnHost;

    /// <summary>What this container's limits add to the VM's size (updated by Update).</summary>
    public Sandbox.SandboxSize Needs { get; set; }

    public ConcurrentDictionary<string, ShimProcess> Execs { get; } = new(StringComparer.Ordinal);

    public ShimProcess Process(string execId) =>
        execId.Length == 0 ? Init
        : Execs.TryGetValue(execId, out var exec) ? exec
        : throw Errors.ExecNotFound(Id, execId);
}
