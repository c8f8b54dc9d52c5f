using ShimV2.Shim.Native;

namespace ShimV2.Shim.Sandbox;

/// <summary>What `delete` does when the shim daemon may be gone: undo one container's host state, and the
/// sandbox's when it was the last one and nobody serves it any more.</summary>
public static class SandboxCleanup
{
    public static void CleanContainer(SandboxPaths paths, string containerId, bool daemonAlive)
    {
        if (!Directory.Exists(paths.Root))
        {
            return;
        }

        var share = paths.ContainerShareDirectory(containerId);
        if (Directory.Exists(share))
        {
            MountTable.UnmountAllUnder(share);
            MountTable.RemoveTree(share);
        }

        if (daemonAlive)
        {
            return;
        }

        var others = Directory.Exists(paths.SharedDirectory) && Directory.EnumerateFileSystemEntries(paths.SharedDirectory).Any();
        if (others)
        {
            return;
        }

        KillOrphanedQemu(paths);
        QemuSandbox.RemoveHostState(paths);
    }

    /// <summary>Kills the sandbox's QEMU by its pid file, after checking the pid still is that QEMU.</summary>
    private static void KillOrphanedQemu(SandboxPaths paths)
    {
        var pidFile = Path.Combine(paths.VmDirectory, "qemu.pid");
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid))
        {
            return;
        }

        try
        {
            var commandLine = File.ReadAllText($"/proc/{pid}/cmdline");
            if (commandLine.Contains(paths.VmDirectory, StringComparison.Ordinal))
            {
                Libc.Kill(pid, 9);
            }
        }
        catch (IOException)
        {
            // Already gone.
        }
    }
}
