using ShimV2.Shim.Native;

namespace ShimV2.Shim.Sandbox;

/// <summary>
/// virtiofsd serves the share from its own mount namespace, copied when it starts; the containers' root filesystems
/// and volumes are mounted under the share later. They reach virtiofsd only when the share is a shared mount (its
/// copy is a slave of it), so the share is bound onto itself and made shared. The bind goes with the pod's other
/// mounts (<see cref="QemuSandbox.RemoveHostState"/> unmounts everything under the pod's directory).
/// </summary>
internal static class SharedMountPoint
{
    /// <exception cref="SandboxException">The bind or the propagation change failed.</exception>
    public static void Make(string directory)
    {
        try
        {
            if (!MountTable.MountPointsUnder(directory).Contains(directory, StringComparer.Ordinal))
            {
                Libc.Mount(directory, directory, null, Libc.MS_BIND, null);
            }

            Libc.Mount("none", directory, null, Libc.MS_SHARED, null);
        }
        catch (IOException e)
        {
            throw new SandboxException($"cannot make the pod's share {directory} a shared mount for virtiofsd: {e.Message}");
        }
    }
}
