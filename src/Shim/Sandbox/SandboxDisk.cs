namespace ShimV2.Shim.Sandbox;

/// <summary>
/// The space a pod needs under its sandbox directory, checked before QEMU starts: with a full disk QEMU fails on its
/// pid file or the console stops mid-boot, and the user would see a boot failure instead of the reason.
/// </summary>
internal static class SandboxDisk
{
    /// <summary>The pid file, identity, sockets and the console log of a boot take a few hundred KiB.</summary>
    public const long MinimumFreeBytes = 1024 * 1024;

    /// <exception cref="SandboxException">Less than <see cref="MinimumFreeBytes"/> free where the sandbox lives.</exception>
    public static void EnsureSpace(SandboxPaths paths)
    {
        long free;
        try
        {
            free = new DriveInfo(paths.VmDirectory).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return; // Not measurable: QEMU's own errors will say what goes wrong.
        }

        if (free < MinimumFreeBytes)
        {
            throw new SandboxException(
                $"no space left on device under {paths.Root}: {free / 1024} KiB free, a pod VM needs at least {MinimumFreeBytes / 1024} KiB there");
        }
    }

    /// <summary>Creates the sandbox's directories (0700); a full disk (or any other failure) becomes one clear line.</summary>
    /// <exception cref="SandboxException">A directory could not be created.</exception>
    public static void CreateDirectories(SandboxPaths paths)
    {
        try
        {
            paths.CreatePrivateDirectories();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SandboxException($"cannot create the sandbox directory {paths.Root}: {e.Message}");
        }
    }
}
