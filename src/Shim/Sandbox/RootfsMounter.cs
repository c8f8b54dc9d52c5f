using Containerd.Types;
using ShimV2.Shim.Native;

namespace ShimV2.Shim.Sandbox;

/// <summary>Mounts a container's rootfs (containerd's mounts, usually one overlay) where the guest sees it.</summary>
public interface IRootfsMounter
{
    void Mount(IReadOnlyList<Mount> mounts, string bundleRootfs, string target);

    /// <summary>Bind-mounts one host path (file or directory) onto <paramref name="target"/>, creating it.</summary>
    void Bind(string source, string target, bool isDirectory, bool readOnly);

    /// <summary>Unmounts everything at or under <paramref name="target"/>.</summary>
    void Unmount(string target);

    /// <summary>Unmounts and deletes a directory tree; refuses while anything under it stays mounted.</summary>
    void RemoveTree(string directory);
}

/// <summary>The real mounter: mount(2) on the host, as runc's shim does for bundle/rootfs.</summary>
public sealed class RootfsMounter : IRootfsMounter
{
    public void Mount(IReadOnlyList<Mount> mounts, string bundleRootfs, string target)
    {
        MountTargetGuard.Check(target);
        Directory.CreateDirectory(target);
        if (mounts.Count == 0)
        {
            // The caller prepared bundle/rootfs itself (ctr --rootfs): share that directory.
            Libc.Mount(bundleRootfs, target, null, Libc.MS_BIND | Libc.MS_REC, null);
            return;
        }

        try
        {
            foreach (var mount in mounts)
            {
                var (flags, data) = MountOptions.Parse(mount.Options);
                if (mount.Type is "bind" or "rbind" || (flags & Libc.MS_BIND) != 0)
                {
                    var recursive = mount.Type == "rbind" ? Libc.MS_REC : 0;
                    Libc.Mount(mount.Source, target, null, Libc.MS_BIND | recursive, null);
                    if ((flags & Libc.MS_RDONLY) != 0)
                    {
                        // A bind mount ignores MS_RDONLY; read-only takes a remount.
                        Libc.Mount(mount.Source, target, null, Libc.MS_BIND | Libc.MS_REMOUNT | Libc.MS_RDONLY, null);
                    }
                }
                else
                {
                    Libc.Mount(mount.Source, target, mount.Type, flags, data);
                }
            }
        }
        catch
        {
            Unmount(target);
            throw;
        }
    }

    public void Bind(string source, string target, bool isDirectory, bool readOnly)
    {
        MountTargetGuard.Check(target);
        if (isDirectory)
        {
            Directory.CreateDirectory(target);
        }
        else
        {
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.WriteAllBytes(target, []);
        }

        Libc.Mount(source, target, null, Libc.MS_BIND | Libc.MS_REC, null);
        if (readOnly)
        {
            Libc.Mount(source, target, null, Libc.MS_BIND | Libc.MS_REMOUNT | Libc.MS_RDONLY, null);
        }
    }

    public void Unmount(string target)
    {
        if (!Directory.Exists(target))
        {
            return;
        }

        MountTable.UnmountAllUnder(target);
    }

    public void RemoveTree(string directory) => MountTable.RemoveTree(directory);
}

/// <summary>Splits mount options into flags and filesystem data, as mount(8) does for the common ones.</summary>
public static class MountOptions
{
    private static readonly Dictionary<string, (bool Clear, ulong Flag)> Flags = new(StringComparer.Ordinal)
    {
        ["ro"] = (false, 1),
        ["rw"] = (true, 1),
        ["nosuid"] = (false, 2),
        ["suid"] = (true, 2),
        ["nodev"] = (false, 4),
        ["dev"] = (true, 4),
        ["noexec"] = (false, 8),
        ["exec"] = (true, 8),
        ["sync"] = (false, 16),
        ["noatime"] = (false, 1024),
        ["nodiratime"] = (false, 2048),
        ["relatime"] = (false, 1 << 21),
        ["strictatime"] = (false, 1 << 24),
        ["bind"] = (false, 4096),
        ["rbind"] = (false, 4096 | 16384),
        ["defaults"] = (false, 0),
    };

    public static (ulong Flags, string? Data) Parse(IEnumerable<string> options)
    {
        ulong flags = 0;
        var data = new List<string>();
        foreach (var option in options)
        {
            if (Flags.TryGetValue(option, out var f))
            {
                flags = f.Clear ? flags & ~f.Flag : flags | f.Flag;
            }
            else
            {
                data.Add(option);
            }
        }

        return (flags, data.Count == 0 ? null : string.Join(',', data));
    }
}
