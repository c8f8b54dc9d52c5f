using ShimV2.Shim.Bundle;

namespace ShimV2.Shim.Sandbox;

/// <summary>
/// The share is exported to the guest read-write, so whatever is under it may have been planted by a guest that a
/// container took over: a symlink where the shim is about to create a mount point (say shared/&lt;next-id&gt; →
/// /etc) would have the host mount, create or later delete outside the share. Mount targets are therefore walked
/// component by component and refused when one is a symlink (absolute, relative, dangling or a loop alike) or
/// names "." or "..". Symlinks inside a container's rootfs are not followed by the host at all: the guest resolves
/// them, and QEMU's 9p server keeps every lookup under the export root.
/// </summary>
public static class MountTargetGuard
{
    /// <exception cref="BundleException">The target is not absolute, has a "." or ".." component, or a component is a symlink.</exception>
    public static void Check(string target)
    {
        if (!Path.IsPathFullyQualified(target))
        {
            throw new BundleException($"refusing to mount on \"{target}\": not an absolute path");
        }

        var parts = target.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.FirstOrDefault(p => p is "." or "..") is { } dots)
        {
            throw new BundleException($"refusing to mount on \"{target}\": it has a \"{dots}\" component");
        }

        var current = "/";
        foreach (var part in parts)
        {
            current = Path.Join(current, part);
            var info = new FileInfo(current);
            if (info.LinkTarget is { } link)
            {
                throw new BundleException($"refusing to mount on {target}: {current} is a symlink (to {link}); the share must not lead the host elsewhere");
            }

            if (!info.Exists && !Directory.Exists(current))
            {
                return; // the rest does not exist yet: the shim creates it, as directories
            }
        }
    }
}
