namespace ShimV2.Shim.Cgroups;

/// <summary>Which cgroup manager a spec's linux.cgroupsPath is written for.</summary>
public enum CgroupDriver
{
    /// <summary>A file-system path (CRI with SystemdCgroup=false: /kubepods/besteffort/pod&lt;uid&gt;/&lt;id&gt;; ctr: /default/&lt;id&gt;).</summary>
    Cgroupfs,

    /// <summary>runc's "slice:prefix:name" (CRI with a cgroup parent ending in .slice): a transient systemd scope.</summary>
    Systemd,
}

/// <summary>
/// An OCI linux.cgroupsPath read as runc reads it: "slice:prefix:name" is the systemd driver's (unit
/// "prefix-name.scope" in "slice"), anything else a cgroupfs path, absolute (from the hierarchy's root) or relative
/// (below the shim's own cgroup).
/// </summary>
public sealed record CgroupsPath
{
    private CgroupsPath(CgroupDriver driver, string path, string? slice, string? unit)
    {
        Driver = driver;
        Path = path;
        Slice = slice;
        Unit = unit;
    }

    public CgroupDriver Driver { get; }

    /// <summary>The cgroup's path in each hierarchy: the cgroupfs path as given (cleaned), or for systemd the
    /// scope's place in the slice tree (/kubepods.slice/kubepods-besteffort.slice/.../cri-containerd-&lt;id&gt;.scope).</summary>
    public string Path { get; }

    /// <summary>Systemd only: the parent slice unit.</summary>
    public string? Slice { get; }

    /// <summary>Systemd only: the transient unit (a scope, or a slice when the name ends in ".slice").</summary>
    public string? Unit { get; }

    public bool IsAbsolute => Path.StartsWith('/');

    /// <exception cref="FormatException">Not a path either driver accepts; the message is for the user.</exception>
    public static CgroupsPath Parse(string raw)
    {
        if (string.IsNullOrWhiteSpace(raw) || raw.Any(char.IsControl))
        {
            throw new FormatException($"invalid linux.cgroupsPath \"{raw}\"");
        }

        var parts = raw.Split(':');
        if (parts.Length == 1)
        {
            return new CgroupsPath(CgroupDriver.Cgroupfs, CleanFsPath(raw), null, null);
        }

        if (parts.Length != 3)
        {
            throw new FormatException($"invalid linux.cgroupsPath \"{raw}\": the systemd form is \"slice:prefix:name\"");
        }

        var (slice, prefix, name) = (parts[0], parts[1], parts[2]);
        if (name.Length == 0 || name.Contains('/', StringComparison.Ordinal) || prefix.Contains('/', StringComparison.Ordinal))
        {
            throw new FormatException($"invalid linux.cgroupsPath \"{raw}\": prefix and name must be non-empty unit name parts");
        }

        // As runc: an empty slice is system.slice; a name that is itself a slice is used as the unit, else a scope.
        slice = slice.Length == 0 ? "system.slice" : slice;
        var unit = name.EndsWith(".slice", StringComparison.Ordinal) ? name
            : prefix.Length == 0 ? $"{name}.scope" : $"{prefix}-{name}.scope";
        var parent = ExpandSlice(slice, raw);
        return new CgroupsPath(CgroupDriver.Systemd, parent == "/" ? $"/{unit}" : $"{parent}/{unit}", slice, unit);
    }

    /// <summary>
    /// systemd's slice naming: "a-b-c.slice" lives at /a.slice/a-b.slice/a-b-c.slice; "-.slice" is the root.
    /// </summary>
    public static string ExpandSlice(string slice, string? whole = null)
    {
        const string suffix = ".slice";
        var context = whole ?? slice;
        if (!slice.EndsWith(suffix, StringComparison.Ordinal) || slice.Contains('/', StringComparison.Ordinal))
        {
            throw new FormatException($"invalid linux.cgroupsPath \"{context}\": \"{slice}\" is not a slice unit name");
        }

        if (slice == "-.slice")
        {
            return "/";
        }

        var name = slice[..^suffix.Length];
        if (name.Length == 0 || name.StartsWith('-') || name.EndsWith('-') || name.Contains("--", StringComparison.Ordinal))
        {
            throw new FormatException($"invalid linux.cgroupsPath \"{context}\": \"{slice}\" is not a valid slice name");
        }

        var path = new System.Text.StringBuilder();
        var dash = -1;
        while ((dash = name.IndexOf('-', dash + 1)) >= 0)
        {
            path.Append('/').Append(name.AsSpan(0, dash)).Append(suffix);
        }

        return path.Append('/').Append(slice).ToString();
    }

    public override string ToString() => Driver == CgroupDriver.Systemd ? $"{Slice}:{Unit}" : Path;

    private static string CleanFsPath(string raw)
    {
        var segments = raw.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Any(s => s is "." or ".."))
        {
            throw new FormatException($"invalid linux.cgroupsPath \"{raw}\": \".\" and \"..\" are not allowed");
        }

        if (segments.Length == 0)
        {
            // The hierarchy's root is nobody's to take or remove.
            throw new FormatException($"invalid linux.cgroupsPath \"{raw}\": the root cgroup cannot be a pod's");
        }

        return (raw.StartsWith('/') ? "/" : string.Empty) + string.Join('/', segments);
    }
}
