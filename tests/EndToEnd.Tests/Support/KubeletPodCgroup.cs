namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// The pod cgroup kubelet's cgroupfs driver makes before RunPodSandbox and names as the sandbox's cgroup parent
/// (e.g. /kubepods/besteffort/pod&lt;uid&gt;): one directory in every v1 hierarchy kubelet uses, or one in the v2
/// tree. containerd's PodSandboxStats reads the pod's own numbers from it. Removed (rmdir, so only when empty) on
/// dispose.
/// </summary>
public sealed class KubeletPodCgroup : IDisposable
{
    private const string Root = "/sys/fs/cgroup";
    private static readonly string[] V1Hierarchies = ["cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "devices", "hugetlb", "systemd"];
    private readonly List<string> _made = [];

    public KubeletPodCgroup(string name)
    {
        Parent = "/" + name;
        var dirs = File.Exists(Path.Combine(Root, "cgroup.controllers"))
            ? [Path.Combine(Root, name)]
            : V1Hierarchies.Select(h => Path.Combine(Root, h)).Where(IsHierarchy).Select(h => Path.Combine(h, name));
        foreach (var dir in dirs)
        {
            if (!Directory.Exists(dir))
            {
                Directory.CreateDirectory(dir);
                _made.Add(dir);
            }
        }
    }

    /// <summary>The cgroup parent as CRI's LinuxPodSandboxConfig.cgroup_parent carries it (cgroupfs form).</summary>
    public string Parent { get; }

    public void Dispose()
    {
        // Children first (a runtime may have made the sandbox's own cgroup below ours); rmdir refuses a busy one.
        foreach (var dir in _made)
        {
            foreach (var child in Directory.EnumerateDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length))
            {
                TryRemove(child);
            }

            TryRemove(dir);
        }
    }

    private static bool IsHierarchy(string dir) =>
        Directory.Exists(dir) && new DirectoryInfo(dir).LinkTarget is null && File.Exists(Path.Combine(dir, "cgroup.procs"));

    private static void TryRemove(string dir)
    {
        try
        {
            Directory.Delete(dir);
        }
        catch (IOException)
        {
            // Still has a process: the test's leftover assertions report it.
        }
    }
}
