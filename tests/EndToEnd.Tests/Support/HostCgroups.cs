using System.Globalization;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// The host's cgroup hierarchies as a user inspects them (mountinfo, /proc/&lt;pid&gt;/cgroup, the cgroup files), read
/// without the shim's code: every v1 hierarchy on a v1/hybrid host, the one cgroup2 mount on a unified host.
/// </summary>
public static class HostCgroups
{
    public static bool Unified => File.Exists("/sys/fs/cgroup/cgroup.controllers");

    /// <summary>Mount points of the hierarchies a pod cgroup lives in.</summary>
    public static IReadOnlyList<string> Hierarchies()
    {
        if (Unified)
        {
            return ["/sys/fs/cgroup"];
        }

        return File.ReadLines("/proc/self/mountinfo")
            .Select(l => l.Split(' '))
            .Where(f => Array.IndexOf(f, "-") is var sep and > 0 && sep + 1 < f.Length && f[sep + 1] == "cgroup")
            .Select(f => f[4])
            .Distinct()
            .ToList();
    }

    /// <summary>The cgroup paths of a process: one per hierarchy (v1: the numbered lines; v2: the 0:: line).</summary>
    public static IReadOnlyList<string> PathsOf(int pid) =>
        File.ReadLines($"/proc/{pid}/cgroup")
            .Select(l => l.Split(':', 3))
            .Where(f => f.Length == 3 && (Unified ? f[0] == "0" : f[0] != "0"))
            .Select(f => f[2])
            .ToList();

    public static IReadOnlyList<string> DirectoriesOf(string path) => Hierarchies().Select(h => h + path).ToList();

    /// <summary>Memory charged to the cgroup and its children, in bytes.</summary>
    public static long MemoryUsage(string path) => long.Parse(
        File.ReadAllText(Unified ? $"/sys/fs/cgroup{path}/memory.current" : $"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes").Trim(),
        CultureInfo.InvariantCulture);

    /// <summary>The cgroup's own memory limit: null when it has none.</summary>
    public static long? MemoryLimit(string path)
    {
        var text = File.ReadAllText(Unified ? $"/sys/fs/cgroup{path}/memory.max" : $"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").Trim();
        return text == "max" || long.Parse(text, CultureInfo.InvariantCulture) >= long.MaxValue / 2 ? null : long.Parse(text, CultureInfo.InvariantCulture);
    }

    /// <summary>Makes a cgroup in every hierarchy, as kubelet makes a pod's (a new v1 cpuset gets its parent's CPUs
    /// and memory nodes); disposing removes what was made, deepest first.</summary>
    public static IDisposable Create(string path)
    {
        var made = new List<string>();
        foreach (var hierarchy in Hierarchies())
        {
            var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            var dir = hierarchy;
            foreach (var part in parts)
            {
                var parent = dir;
                dir = Path.Combine(dir, part);
                if (Directory.Exists(dir))
                {
                    continue;
                }

                Directory.CreateDirectory(dir);
                made.Add(dir);
                foreach (var file in new[] { "cpuset.cpus", "cpuset.mems" })
                {
                    if (File.Exists(Path.Combine(dir, file)) && File.ReadAllText(Path.Combine(dir, file)).Trim().Length == 0)
                    {
                        File.WriteAllText(Path.Combine(dir, file), File.ReadAllText(Path.Combine(parent, file)).Trim());
                    }
                }
            }
        }

        return new Removal(made);
    }

    private sealed class Removal(List<string> made) : IDisposable
    {
        public void Dispose()
        {
            foreach (var dir in made.OrderByDescending(d => d.Length))
            {
                try
                {
                    // Whatever a failed test left below kubelet's cgroup goes too (empty of processes by now).
                    foreach (var child in Directory.EnumerateDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length))
                    {
                        Directory.Delete(child);
                    }

                    Directory.Delete(dir);
                }
                catch (IOException)
                {
                    // Still in use: the test has already failed on what is in it.
                }
            }
        }
    }
}
