namespace ShimV2.Shim.Native;

/// <summary>Reads /proc/self/mountinfo, so cleanup can find what is still mounted under a directory.</summary>
public static class MountTable
{
    public static IReadOnlyList<string> MountPointsUnder(string directory)
    {
        var prefix = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        var result = new List<string>();
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length < 5)
            {
                continue;
            }

            var mountPoint = Unescape(fields[4]);
            if (mountPoint == prefix || mountPoint.StartsWith(prefix + "/", StringComparison.Ordinal))
            {
                result.Add(mountPoint);
            }
        }

        // Deepest first, so children are unmounted before their parents.
        result.Sort((a, b) => b.Length.CompareTo(a.Length));
        return result;
    }

    /// <summary>Unmounts everything at or below the directory, deepest first.</summary>
    public static void UnmountAllUnder(string directory)
    {
        foreach (var mountPoint in MountPointsUnder(directory))
        {
            try
            {
                Libc.Unmount(mountPoint);
            }
            catch (IOException)
            {
                // A busy mount is detached instead, so teardown never leaves it behind.
                Libc.Unmount(mountPoint, Libc.MNT_DETACH);
            }
        }
    }

    /// <summary>
    /// Deletes a directory tree that may hold mounts. Everything is unmounted first and the delete is refused
    /// while anything is still mounted: a recursive delete must never reach into a bind-mounted host path.
    /// </summary>
    public static void RemoveTree(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return;
        }

        UnmountAllUnder(directory);
        var left = MountPointsUnder(directory);
        if (left.Count > 0)
        {
            throw new IOException($"not removing {directory}: {left[0]} is still mounted");
        }

        Directory.Delete(directory, recursive: true);
    }

    private static string Unescape(string field) =>
        field.Replace("\\040", " ", StringComparison.Ordinal)
            .Replace("\\011", "\t", StringComparison.Ordinal)
            .Replace("\\012", "\n", StringComparison.Ordinal)
            .Replace("\\134", "\\", StringComparison.Ordinal);
}
