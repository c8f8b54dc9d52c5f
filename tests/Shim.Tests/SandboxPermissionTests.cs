using ShimV2.Shim.Sandbox;

namespace ShimV2.Shim.Tests;

/// <summary>A pod's state on the host (sockets, console, share) is for root alone.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SandboxPermissionTests : IDisposable
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "shimv2-perm-" + Guid.NewGuid().ToString("N"));

    [Fact]
    public void Pod_directories_are_created_owner_only()
    {
        var paths = new SandboxPaths("pod-a", Path.Combine(_root, "state"));

        paths.CreatePrivateDirectories();

        foreach (var directory in new[] { Path.Combine(_root, "state"), paths.Root, paths.VmDirectory, paths.SharedDirectory })
        {
            Assert.Equal(OwnerOnly, File.GetUnixFileMode(directory));
        }
    }

    [Fact]
    public void Directories_an_older_shim_left_world_readable_are_tightened()
    {
        var paths = new SandboxPaths("pod-b", Path.Combine(_root, "state"));
        var open = OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        Directory.CreateDirectory(paths.VmDirectory, open);
        Directory.CreateDirectory(paths.SharedDirectory, open);
        File.SetUnixFileMode(paths.Root, open);

        paths.CreatePrivateDirectories();

        Assert.Equal(OwnerOnly, File.GetUnixFileMode(paths.Root));
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(paths.VmDirectory));
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(paths.SharedDirectory));
    }

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
