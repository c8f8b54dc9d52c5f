using System.Runtime.InteropServices;
using ShimV2.Hypervisor;
using ShimV2.Shim.Native;

namespace ShimV2.Shim.Sandbox;

/// <summary>What `delete` does when the shim daemon may be gone: undo one container's host state, and the
/// sandbox's when it was the last one and nobody serves it any more.</summary>
public static class SandboxCleanup
{
    /// <summary>How long QEMU gets to end after SIGTERM before SIGKILL.</summary>
    public static readonly TimeSpan TermGrace = TimeSpan.FromSeconds(3);

    /// <summary>How long a SIGKILLed QEMU may take to be gone (it unmaps the guest's memory).</summary>
    public static readonly TimeSpan KillDeadline = TimeSpan.FromSeconds(15);

    /// <exception cref="IOException">The VM's QEMU would not die, or a mount would not go; the pod's state is kept
    /// for the next `delete`.</exception>
    public static void CleanContainer(SandboxPaths paths, string containerId, bool daemonAlive)
    {
        if (!Directory.Exists(paths.Root))
        {
            return;
        }

        // containerd runs `delete` for each of a dead shim's containers, concurrently: one at a time here, so the
        // last one sees the others' shares gone and stops the VM exactly once.
        using var sandboxLock = DirectoryLock.TryAcquire(paths.Root);
        if (sandboxLock is null)
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

        StopOrphanedQemu(paths);
        if (!ShimV2.Hypervisor.Virtiofs.VirtiofsOrphans.Stop(paths.VmDirectory, TermGrace, KillDeadline))
        {
            throw new IOException($"the virtiofsd of sandbox {paths.SandboxId} is still running {TermGrace + KillDeadline} after SIGTERM and SIGKILL");
        }
        // Its processes are gone (QEMU confirmed dead, the shim too): no waiting within delete's 5 s.
        if (Cgroups.HostCgroup.RemoveRecordedAsync(QemuSandbox.HostCgroupRecord(paths), TimeSpan.FromSeconds(1)).GetAwaiter().GetResult() is { } failure)
        {
            throw new IOException($"cannot remove the pod cgroup of sandbox {paths.SandboxId}: {failure}");
        }

        QemuSandbox.RemoveHostState(paths);
    }

    /// <summary>Stops the sandbox's QEMU, found by its pid file and confirmed by its identity.</summary>
    private static void StopOrphanedQemu(SandboxPaths paths)
    {
        if (OrphanedQemu.Find(paths.VmDirectory) is not { } pid || ProcStat.Read(pid) is not { } stat)
        {
            return;
        }

        if (!OrphanedQemu.Stop(pid, stat.StartTime, TermGrace, KillDeadline))
        {
            throw new IOException($"qemu pid {pid} of sandbox {paths.SandboxId} is still running {TermGrace + KillDeadline} after SIGTERM and SIGKILL");
        }
    }
}

/// <summary>An exclusive flock on a directory, held until disposed.</summary>
internal sealed class DirectoryLock : IDisposable
{
    private int _fd;

    private DirectoryLock(int fd) => _fd = fd;

    /// <summary>Null when the directory is gone (before or while waiting: whoever held the lock removed it).</summary>
    public static DirectoryLock? TryAcquire(string directory)
    {
        var fd = Libc.Open(directory, Libc.O_RDONLY_DIRECTORY_CLOEXEC);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == Libc.ENOENT ? null : throw new IOException($"open {directory}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }

        if (Libc.Flock(fd, Libc.LOCK_EX) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            _ = Libc.Close(fd);
            throw new IOException($"flock {directory}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }

        if (!Directory.Exists(directory))
        {
            _ = Libc.Close(fd);
            return null;
        }

        return new DirectoryLock(fd);
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            _ = Libc.Close(fd);
        }
    }
}
