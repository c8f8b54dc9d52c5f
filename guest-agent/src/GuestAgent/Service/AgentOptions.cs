namespace ShimV2.GuestAgent.Service;

/// <summary>Paths and defaults of the agent (overridable for tests).</summary>
internal sealed record AgentOptions
{
    public const string DefaultHelperPath = "/usr/libexec/csharp-agent/csharp-nsexec";

    /// <summary>The 9p options used when CreateSandbox gives none.</summary>
    public static readonly IReadOnlyList<string> Default9pOptions = ["trans=virtio", "version=9p2000.L", "cache=mmap", "msize=262144"];

    public string HelperPath { get; init; } = Environment.GetEnvironmentVariable("CSHARP_AGENT_NSEXEC") ?? DefaultHelperPath;

    public string CgroupRoot { get; init; } = Cgroups.Cgroup.DefaultRoot;

    public string DefaultSharePath { get; init; } = "/run/csharp/shared";

    /// <summary>How long RemoveContainer waits for the container's processes to die.</summary>
    public TimeSpan KillTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long Pause/Resume wait for cgroup.events to say frozen/thawed.</summary>
    public TimeSpan FreezeTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
