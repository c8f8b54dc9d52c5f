using System.Globalization;
using System.Text;

namespace ShimV2.Shim.Cgroups;

/// <summary>One mounted cgroup hierarchy: a v1 one (its controllers, or a named one such as "name=systemd") or v2's.</summary>
/// <param name="Root">The mount's root inside the hierarchy (mountinfo's 4th field; "/" unless bind-mounted or in a
/// cgroup namespace).</param>
public sealed record CgroupMount(string MountPoint, string Root, bool IsV2, IReadOnlyList<string> Controllers)
{
    /// <summary>The directory of the cgroup <paramref name="path"/> (absolute within the hierarchy).</summary>
    public string DirectoryOf(string path)
    {
        var inside = Root != "/" && (path == Root || path.StartsWith(Root + "/", StringComparison.Ordinal)) ? path[Root.Length..] : path;
        return inside.Trim('/') is { Length: > 0 } relative ? $"{MountPoint.TrimEnd('/')}/{relative}" : MountPoint;
    }

    public bool Has(string controller) => Controllers.Contains(controller, StringComparer.Ordinal);

    public override string ToString() => IsV2 ? $"{MountPoint} (v2)" : $"{MountPoint} ({string.Join(',', Controllers)})";
}

/// <summary>
/// The cgroup hierarchies a pod cgroup is made in, read from mountinfo: on a unified (v2) host the cgroup2 mount at
/// /sys/fs/cgroup; on a v1 or hybrid host every v1 hierarchy, named ones included (as runc's cgroupfs driver does:
/// hybrid's extra cgroup2 mount at /sys/fs/cgroup/unified holds no controller and is left alone).
/// </summary>
public sealed class CgroupHierarchies
{
    public const string DefaultMountPoint = "/sys/fs/cgroup";

    private CgroupHierarchies(IReadOnlyList<CgroupMount> targets, bool unified)
    {
        Targets = targets;
        Unified = unified;
    }

    /// <summary>The hierarchies a pod cgroup lives in.</summary>
    public IReadOnlyList<CgroupMount> Targets { get; }

    /// <summary>cgroup v2 only.</summary>
    public bool Unified { get; }

    public static CgroupHierarchies Read() => Parse(File.ReadAllText("/proc/self/mountinfo"));

    /// <exception cref="InvalidOperationException">No cgroup file system is mounted.</exception>
    public static CgroupHierarchies Parse(string mountinfo)
    {
        var v1 = new List<CgroupMount>();
        var v2 = new List<CgroupMount>();
        foreach (var line in mountinfo.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // id parent major:minor root mountpoint options [optional fields...] - fstype source superoptions
            var fields = line.Split(' ');
            var separator = Array.IndexOf(fields, "-");
            if (fields.Length < 7 || separator < 6 || separator + 3 > fields.Length)
            {
                continue;
            }

            var fstype = fields[separator + 1];
            var root = Unescape(fields[3]);
            var mountPoint = Unescape(fields[4]);
            if (fstype == "cgroup2")
            {
                v2.Add(new CgroupMount(mountPoint, root, true, []));
            }
            else if (fstype == "cgroup")
            {
                var options = fields[separator + 3].Split(',');
                var controllers = options.Where(o => o.StartsWith("name=", StringComparison.Ordinal) || IsController(o)).ToList();
                if (controllers.Count > 0 && !v1.Any(m => m.Controllers.SequenceEqual(controllers)))
                {
                    v1.Add(new CgroupMount(mountPoint, root, false, controllers));
                }
            }
        }

        var unified = v2.FirstOrDefault(m => m.MountPoint == DefaultMountPoint);
        if (unified is not null || (v1.Count == 0 && v2.Count > 0))
        {
            return new CgroupHierarchies([unified ?? v2[0]], true);
        }

        return v1.Count > 0 ? new CgroupHierarchies(v1, false) : throw new InvalidOperationException("no cgroup file system is mounted");
    }

    /// <summary>The cgroup paths (within each target hierarchy) of a process, from its /proc/&lt;pid&gt;/cgroup.</summary>
    public IReadOnlyDictionary<CgroupMount, string> MembershipOf(string procCgroup)
    {
        var result = new Dictionary<CgroupMount, string>();
        foreach (var line in procCgroup.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // hierarchy-id:controller-list:path (the path may itself contain ':')
            var first = line.IndexOf(':', StringComparison.Ordinal);
            var second = first < 0 ? -1 : line.IndexOf(':', first + 1);
            if (second < 0)
            {
                continue;
            }

            var controllers = line[(first + 1)..second];
            var path = line[(second + 1)..];
            if (controllers.Length == 0 && line.AsSpan(0, first).SequenceEqual("0"))
            {
                if (Targets.FirstOrDefault(t => t.IsV2) is { } v2)
                {
                    result[v2] = path;
                }

                continue;
            }

            var wanted = controllers.Split(',');
            if (Targets.FirstOrDefault(t => !t.IsV2 && wanted.All(t.Has)) is { } mount)
            {
                result[mount] = path;
            }
        }

        return result;
    }

    private static bool IsController(string option) => option is "cpu" or "cpuacct" or "cpuset" or "memory" or "devices" or "freezer"
        or "net_cls" or "net_prio" or "blkio" or "perf_event" or "hugetlb" or "pids" or "rdma" or "misc";

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo.</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }

        var text = new StringBuilder(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length
                && int.TryParse(field.AsSpan(i + 1, 3), NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                text.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                text.Append(field[i]);
            }
        }

        return text.ToString();
    }
}
