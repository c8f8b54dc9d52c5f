namespace ShimV2.Hypervisor;

/// <summary>Directories for the owner alone (0700): a pod's sockets, console and share are not for other users.</summary>
public static class PrivateDirectory
{
    public const UnixFileMode Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Creates <paramref name="path"/> (and missing parents) and sets it to 0700, also when it existed.</summary>
    public static void Create(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("unix file modes");
        }

        Directory.CreateDirectory(path, Mode);
        File.SetUnixFileMode(path, Mode);
    }

    /// <summary>Sets files QEMU created with its umask (sockets, console log) to 0600; absent ones are skipped.</summary>
    public static void RestrictFiles(params string[] paths)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("unix file modes");
        }

        foreach (var path in paths)
        {
            try
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
            catch (FileNotFoundException)
            {
            }
        }
    }
}
