using ShimV2.Shim.Bundle;
using ShimV2.Shim.Sandbox;

namespace ShimV2.Shim.Tests;

/// <summary>
/// A guest can write anything into its share, symlinks included: mount points the host creates there must never be
/// reached through one, nor through "..". Each case is refused before anything is created or mounted, and nothing
/// appears outside the share.
/// </summary>
public sealed class HostilePathTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "shimv2-hostile-" + Guid.NewGuid().ToString("N"));
    private readonly string _share;
    private readonly string _outside;

    public HostilePathTests()
    {
        _share = Path.Combine(_root, "pod", "shared");
        _outside = Path.Combine(_root, "outside");
        Directory.CreateDirectory(_share);
        Directory.CreateDirectory(_outside);
    }

    public static TheoryData<string, string> Plants => new()
    {
        // (what the guest planted under the share, relative to it → link target; "{outside}" is a host directory)
        { "c2", "{outside}" },            // absolute symlink as the container's share directory
        { "c2", "../../outside" },        // relative symlink climbing out of the share
        { "c2", "/" },                     // the host's root
        { "c2", "c2" },                    // a loop onto itself
        { "c2", "loop-b" },                // a two-link loop (loop-b → c2)
        { "c2", "missing-target" },        // dangling: the host would create the target through it
    };

    [Theory]
    [MemberData(nameof(Plants))]
    public void A_rootfs_mount_point_behind_a_planted_symlink_is_refused(string planted, string linkTarget)
    {
        Plant(planted, linkTarget);
        var target = Path.Combine(_share, "c2", "rootfs");

        var e = Assert.Throws<BundleException>(() => new RootfsMounter().Mount([], "/nonexistent-bundle/rootfs", target));

        Assert.Contains("is a symlink", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_outside));
    }

    [Theory]
    [MemberData(nameof(Plants))]
    public void A_bind_mount_point_behind_a_planted_symlink_is_refused(string planted, string linkTarget)
    {
        // The same links, planted as the directory bind mounts go into: shared/c1/mounts.
        Directory.CreateDirectory(Path.Combine(_share, "c1"));
        Plant(Path.Combine("c1", "mounts"), linkTarget == planted ? "mounts" : linkTarget);

        var e = Assert.Throws<BundleException>(() =>
            new RootfsMounter().Bind(_outside, Path.Combine(_share, "c1", "mounts", "0-data"), isDirectory: true, readOnly: false));

        Assert.Contains("is a symlink", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_outside));
    }

    [Theory]
    [InlineData("/c1/../../outside/rootfs")]
    [InlineData("/c1/./rootfs")]
    [InlineData("/../outside")]
    public void Dot_and_dot_dot_components_are_refused(string suffix)
    {
        var e = Assert.Throws<BundleException>(() => MountTargetGuard.Check(_share + suffix));

        Assert.Contains("component", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_relative_target_is_refused() =>
        Assert.Throws<BundleException>(() => MountTargetGuard.Check("shared/c1/rootfs"));

    [Fact]
    public void A_plain_path_inside_the_share_is_accepted_existing_or_not()
    {
        Directory.CreateDirectory(Path.Combine(_share, "c1", "mounts"));

        MountTargetGuard.Check(Path.Combine(_share, "c1", "mounts", "0-data"));
        MountTargetGuard.Check(Path.Combine(_share, "c3", "rootfs"));
    }

    private void Plant(string relative, string linkTarget)
    {
        var path = Path.Combine(_share, relative);
        if (linkTarget == "loop-b")
        {
            File.CreateSymbolicLink(Path.Combine(Path.GetDirectoryName(path)!, "loop-b"), path);
        }

        File.CreateSymbolicLink(path, linkTarget.Replace("{outside}", _outside, StringComparison.Ordinal));
    }

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
