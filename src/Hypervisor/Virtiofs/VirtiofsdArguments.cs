namespace ShimV2.Hypervisor.Virtiofs;

/// <summary>
/// virtiofsd's command line for one pod. Both flavors get the same policy: serve <see cref="SharedDirectory"/> alone,
/// confined to it in new mount, pid and net namespaces (sandbox=namespace: a guest that takes over virtiofsd sees
/// only the share and has no network), seccomp on (the C one always filters; the Rust one is told to kill on a
/// forbidden call), cache=auto (the host may change files under the guest: volumes are live host directories),
/// submounts announced (each host mount under the share, e.g. a container's overlay rootfs, is its own file system
/// in the guest, so inode numbers stay unique as 9p's multidevs=remap keeps them), xattrs passed through (file
/// capabilities in images, as with 9p).
/// </summary>
public sealed record VirtiofsdArguments(VirtiofsdFlavor Flavor, string SocketPath, string SharedDirectory, bool Debug = false)
{
    public const string CacheMode = "auto";

    public IReadOnlyList<string> Args => Flavor switch
    {
        VirtiofsdFlavor.Qemu =>
        [
            $"--socket-path={SocketPath}",
            "-o", $"source={FuseOpt(SharedDirectory)}",
            "-o", "sandbox=namespace",
            "-o", $"cache={CacheMode}",
            "-o", "announce_submounts",
            "-o", "xattr",
            "-o", $"log_level={(Debug ? "info" : "warn")}",
        ],
        _ =>
        [
            "--socket-path", SocketPath,
            "--shared-dir", SharedDirectory,
            "--sandbox", "namespace",
            "--seccomp", "kill",
            "--cache", CacheMode,
            "--announce-submounts",
            "--xattr",
            "--log-level", Debug ? "info" : "warn",
        ],
    };

    /// <summary>The C virtiofsd splits -o at commas; a backslash escapes one.</summary>
    public static string FuseOpt(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace(",", "\\,", StringComparison.Ordinal);
    }

    /// <summary>Whether a process's command line is a virtiofsd serving exactly <paramref name="socketPath"/>
    /// (either flavor's spelling of the option).</summary>
    public static bool NamesSocket(IReadOnlyList<string> commandLine, string socketPath)
    {
        ArgumentNullException.ThrowIfNull(commandLine);
        for (var i = 0; i < commandLine.Count; i++)
        {
            if (commandLine[i] == $"--socket-path={socketPath}"
                || (commandLine[i] == "--socket-path" && i + 1 < commandLine.Count && commandLine[i + 1] == socketPath))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The lock file the C virtiofsd leaves behind per socket: /var/run/virtiofsd/&lt;socket path, '/' as '.'&gt;.pid.</summary>
    public static string QemuFlavorLockFile(string socketPath)
    {
        ArgumentNullException.ThrowIfNull(socketPath);
        return Path.Combine("/var/run/virtiofsd", socketPath.Replace('/', '.') + ".pid");
    }
}
