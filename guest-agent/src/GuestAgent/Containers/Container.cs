using System.Collections.Concurrent;
using ShimV2.GuestAgent.Cgroups;
using ShimV2.GuestAgent.Seccomp;

namespace ShimV2.GuestAgent.Containers;

internal enum ContainerStatus
{
    /// <summary>Init is set up and blocked before exec.</summary>
    Created,

    /// <summary>Init exec'd (it may have exited since: see <see cref="Container.HasExited"/>).</summary>
    Running,
}

/// <summary>One container in the sandbox: its init, its execs, its cgroup.</summary>
internal sealed class Container
{
    public Container(string id, string rootfs, uint namespaceFlags, Cgroup? cgroup, AgentProcess init, OomWatcher? oom)
    {
        Id = id;
        Rootfs = rootfs;
        NamespaceFlags = namespaceFlags;
        Cgroup = cgroup;
        Init = init;
        Oom = oom;
    }

    public string Id { get; }

    public string Rootfs { get; }

    /// <summary>CLONE_NEW* flags of the namespaces the container owns (execs join them).</summary>
    public uint NamespaceFlags { get; }

    public Cgroup? Cgroup { get; }

    public AgentProcess Init { get; }

    public OomWatcher? Oom { get; }

    /// <summary>Its init is not PID 1 of its own PID namespace (the pod's, or the VM's): see ProcessPlan.</summary>
    public bool SharesPidNamespace { get; init; }

    /// <summary>The spec's seccomp filter, applied to every exec as well.</summary>
    public SeccompFilter? Seccomp { get; init; }

    public ConcurrentDictionary<string, AgentProcess> Execs { get; } = new(StringComparer.Ordinal);

    public ContainerStatus Status { get; set; }

    /// <summary>Serializes start, exec, pause/resume and removal of this container.</summary>
    public SemaphoreSlim Gate { get; } = new(1, 1);

    public bool HasExited => Init.HasExited;

    public IEnumerable<AgentProcess> AllProcesses => Execs.Values.Prepend(Init);
}
