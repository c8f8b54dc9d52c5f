using System.Diagnostics;
using System.Globalization;

namespace ShimV2.Hypervisor;

/// <summary>
/// The QEMU of a VM whose shim is gone (killed, crashed): found by its pid file and confirmed by identity, then
/// stopped. It is not our child, so its end is seen by polling /proc, with deadlines.
/// </summary>
public static class OrphanedQemu
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// The pid of this VM directory's QEMU when the process with the pid in <c>qemu.pid</c> is provably it: its
    /// command line passes exactly this directory's pid file to <c>-pidfile</c>, and, where the shim recorded
    /// <see cref="QemuIdentity"/>, its start time and executable are the recorded ones (else its executable is a
    /// <c>qemu-system-*</c>). Null otherwise: nothing of ours runs under that pid.
    /// </summary>
    public static int? Find(string vmDirectory, string procRoot = "/proc")
    {
        var recorded = QemuIdentity.Read(Path.Combine(vmDirectory, QemuIdentity.FileName));
        var pidFile = Path.Combine(vmDirectory, "qemu.pid");
        try
        {
            if (int.TryParse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid > 1)
            {
                return IsThisVmsQemu(pid, vmDirectory, recorded, procRoot) ? pid : null;
            }
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // QEMU writes its pid file a moment after it starts: a shim killed in between leaves none.
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        return recorded is not null && IsThisVmsQemu(recorded.Pid, vmDirectory, recorded, procRoot)
            ? recorded.Pid
            : FindByCommandLine(vmDirectory, procRoot);
    }

    /// <summary>Without a pid file: the one process whose identity check passes for this directory.</summary>
    private static int? FindByCommandLine(string vmDirectory, string procRoot)
    {
        foreach (var dir in Directory.EnumerateDirectories(procRoot))
        {
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && pid > 1
                && IsThisVmsQemu(pid, vmDirectory, null, procRoot))
            {
                return pid;
            }
        }

        return null;
    }

    /// <summary>The identity check of <see cref="Find"/>, for a given pid.</summary>
    public static bool IsThisVmsQemu(int pid, string vmDirectory, QemuIdentity? recorded, string procRoot = "/proc")
    {
        if (ProcStat.Read(pid, procRoot) is not { Zombie: false } stat)
        {
            return false;
        }

        var args = QemuIdentity.ReadCommandLine(pid, procRoot);
        var pidFile = Path.Combine(vmDirectory, "qemu.pid");
        var namesThisVm = false;
        for (var i = 0; args is not null && i + 1 < args.Count; i++)
        {
            if (args[i] == "-pidfile" && args[i + 1] == pidFile)
            {
                namesThisVm = true;
                break;
            }
        }

        if (!namesThisVm || QemuIdentity.ReadExecutable(pid, procRoot) is not { } exe)
        {
            return false;
        }

        return recorded is null
            ? Path.GetFileName(exe).StartsWith("qemu-system", StringComparison.Ordinal)
            : recorded.Pid == pid && recorded.StartTime == stat.StartTime && recorded.Executable == exe;
    }

    /// <summary>
    /// SIGTERM (QEMU's clean shutdown), up to <paramref name="grace"/> for it to go, then SIGKILL and up to
    /// <paramref name="killDeadline"/> more. True when the process is gone (or a zombie: dead, waiting for its new
    /// parent to reap it).
    /// </summary>
    public static bool Stop(int pid, ulong startTime, TimeSpan grace, TimeSpan killDeadline, string procRoot = "/proc")
    {
        _ = Native.Kill(pid, 15);
        if (WaitGone(pid, startTime, grace, procRoot))
        {
            return true;
        }

        _ = Native.Kill(pid, 9);
        return WaitGone(pid, startTime, killDeadline, procRoot);
    }

    /// <summary>Whether the process that started at <paramref name="startTime"/> is gone within the deadline.</summary>
    public static bool WaitGone(int pid, ulong startTime, TimeSpan deadline, string procRoot = "/proc")
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (ProcStat.Read(pid, procRoot) is not { Zombie: false } stat || stat.StartTime != startTime)
            {
                return true;
            }

            if (clock.Elapsed >= deadline)
            {
                return false;
            }

            Thread.Sleep(PollInterval);
        }
    }
}
