using System.Globalization;
using Microsoft.Extensions.Logging;

namespace ShimV2.Shim.Cgroups;

/// <summary>A cgroup problem the user must fix; the message is one line.</summary>
public sealed class HostCgroupException(string message) : Exception(message);

/// <summary>
/// The pod's cgroup on the host, from the sandbox spec's linux.cgroupsPath: the shim moves itself in before it
/// spawns QEMU (so every byte and cycle of the VM is charged there from its first instruction), and out again when
/// the VM is gone, then removes it. So kubelet's pod cgroup (the parent CRI names) accounts and limits the VM, as it
/// would runc's pause and containers. The shim sets no limit of its own here: the spec's resources are the
/// containers', enforced by the guest's cgroups; put on QEMU they would cap the whole VM at one container's limit.
/// </summary>
public sealed partial class HostCgroup
{
    /// <summary>The file beside the sandbox's state naming the cgroup, so `delete` can remove it after a crash.</summary>
    public const string RecordFileName = "host-cgroup";

    private static readonly TimeSpan RemoveDeadline = TimeSpan.FromSeconds(5);

    private readonly CgroupHierarchies _hierarchies;
    private readonly IReadOnlyDictionary<CgroupMount, string> _origin;
    private readonly ISystemdManager? _systemd;
    private readonly string _recordPath;
    private readonly ILogger _logger;
    private int _left;

    private HostCgroup(
        CgroupsPath path, int member, IReadOnlyList<string> directories, CgroupHierarchies hierarchies,
        IReadOnlyDictionary<CgroupMount, string> origin, ISystemdManager? systemd, string recordPath, ILogger logger)
    {
        Path = path;
        Member = member;
        Directories = directories;
        _hierarchies = hierarchies;
        _origin = origin;
        _systemd = systemd;
        _recordPath = recordPath;
        _logger = logger;
    }

    public CgroupsPath Path { get; }

    /// <summary>The process moved in (the shim), which is moved back out on <see cref="LeaveAsync"/>.</summary>
    public int Member { get; }

    /// <summary>The cgroup's directory in each hierarchy.</summary>
    public IReadOnlyList<string> Directories { get; }

    /// <summary>
    /// Creates the cgroup named by <paramref name="path"/> (or takes one that exists with no process in it) and
    /// moves <paramref name="pid"/> into it, remembering where it came from.
    /// </summary>
    /// <param name="recordPath">Where to note the cgroup for a later `delete` (written before anything is made).</param>
    /// <exception cref="HostCgroupException">The cgroup cannot be made or entered; nothing is left behind.</exception>
    public static async Task<HostCgroup> EnterAsync(
        CgroupsPath path, int pid, string sandboxId, string recordPath, ILogger logger, CancellationToken cancellationToken,
        ISystemdManager? systemd = null, CgroupHierarchies? hierarchies = null)
    {
        hierarchies ??= ReadHierarchies();
        var origin = hierarchies.MembershipOf(ReadProcCgroup(pid));
        var directories = hierarchies.Targets.Select(t => t.DirectoryOf(AbsolutePath(path, t, origin))).ToList();
        if (path.Driver == CgroupDriver.Systemd)
        {
            // As runc's systemd driver: without systemd there is nobody to ask for a scope, and writing a slice tree
            // by hand would hide a misconfigured node.
            if (systemd is null && !SystemdDbusManager.SystemdRunning)
            {
                throw new HostCgroupException(
                    $"linux.cgroupsPath \"{path}\" is for the systemd cgroup driver, but systemd is not running on this host " +
                    $"(no {SystemdDbusManager.BootedMarker}): use the cgroupfs driver (containerd's SystemdCgroup = false, kubelet's cgroupDriver: cgroupfs)");
            }

            systemd ??= new SystemdDbusManager();
            WriteRecord(recordPath, "systemd", [path.Unit!]);
            try
            {
                await systemd.StartTransientUnitAsync(SystemdScopeRequest.For(path, sandboxId, pid), cancellationToken);
            }
            catch
            {
                File.Delete(recordPath);
                throw;
            }

            var scope = new HostCgroup(path, pid, directories, hierarchies, origin, systemd, recordPath, logger);
            LogEntered(logger, sandboxId, pid, scope);
            return scope;
        }

        foreach (var directory in directories)
        {
            if (Directory.Exists(directory) && ReadProcs(directory).Where(p => p != pid).ToList() is { Count: > 0 } others)
            {
                throw new HostCgroupException(
                    $"cgroup {directory} (linux.cgroupsPath \"{path}\") already has processes ({string.Join(' ', others.Take(5))}): it is not this pod's to take");
            }
        }

        WriteRecord(recordPath, "cgroupfs", directories);
        var cgroup = new HostCgroup(path, pid, directories, hierarchies, origin, null, recordPath, logger);
        try
        {
            foreach (var (mount, directory) in hierarchies.Targets.Zip(directories))
            {
                Create(mount, directory);
            }

            cgroup.Add(pid);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            await cgroup.LeaveAsync(CancellationToken.None);
            throw new HostCgroupException($"cannot place the pod in cgroup \"{path}\": {e.Message}");
        }

        LogEntered(logger, sandboxId, pid, cgroup);
        return cgroup;
    }

    /// <summary>Moves another process (QEMU) in. Idempotent.</summary>
    /// <exception cref="IOException">The kernel refused (e.g. the process is gone).</exception>
    public void Add(int pid)
    {
        foreach (var directory in Directories)
        {
            File.WriteAllText(System.IO.Path.Combine(directory, "cgroup.procs"), pid.ToString(CultureInfo.InvariantCulture));
        }
    }

    public override string ToString() => $"{Path} ({string.Join(' ', Directories)})";

    /// <summary>Whether <paramref name="pid"/> is in this cgroup in every hierarchy.</summary>
    public bool Contains(int pid)
    {
        var membership = _hierarchies.MembershipOf(ReadProcCgroup(pid));
        return _hierarchies.Targets.Zip(Directories).All(pair =>
            membership.TryGetValue(pair.First, out var path) && pair.First.DirectoryOf(path) == pair.Second);
    }

    /// <summary>
    /// Moves the shim back where it came from and removes the cgroup (cgroupfs), or stops the scope (systemd).
    /// Call after the VM is gone. Problems are logged: a pod that is going away is not kept for its cgroup.
    /// </summary>
    public async Task LeaveAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _left, 1) == 1)
        {
            return;
        }

        MoveBack();
        if (_systemd is not null)
        {
            try
            {
                await _systemd.StopUnitAsync(Path.Unit!, cancellationToken);
            }
            catch (HostCgroupException e)
            {
                LogRemoveFailed(_logger, Path.Unit!, e.Message);
            }
        }
        else
        {
            foreach (var directory in Directories)
            {
                if (await RemoveAsync(directory, RemoveDeadline) is { } failure)
                {
                    LogRemoveFailed(_logger, directory, failure);
                }
            }
        }

        File.Delete(_recordPath);
        LogLeft(_logger, this);
    }

    /// <summary>
    /// For `delete` after the shim died: removes the cgroup it recorded (its processes are gone by now). A systemd
    /// scope needs nothing: systemd removes an empty transient scope by itself.
    /// </summary>
    /// <returns>What could not be removed, or null.</returns>
    public static async Task<string?> RemoveRecordedAsync(string recordPath, TimeSpan? patience = null)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(recordPath);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }

        string? failed = null;
        if (lines.FirstOrDefault() == "cgroupfs")
        {
            foreach (var directory in lines.Skip(1).Where(l => l.StartsWith('/')))
            {
                failed ??= await RemoveAsync(directory, patience ?? RemoveDeadline);
            }
        }

        if (failed is null)
        {
            File.Delete(recordPath);
        }

        return failed;
    }

    private void MoveBack()
    {
        if (!Directory.Exists($"/proc/{Member}"))
        {
            return;
        }

        foreach (var mount in _hierarchies.Targets)
        {
            var home = _origin.TryGetValue(mount, out var path) ? mount.DirectoryOf(path) : mount.MountPoint;
            try
            {
                File.WriteAllText(System.IO.Path.Combine(home, "cgroup.procs"), Member.ToString(CultureInfo.InvariantCulture));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The cgroup it came from is gone: the hierarchy's root always takes a process.
                LogMoveBackFailed(_logger, Member, home, e.Message);
                TryWrite(System.IO.Path.Combine(mount.MountPoint, "cgroup.procs"), Member);
            }
        }
    }

    /// <summary>rmdir, retried while exiting processes still hold it (a just-reaped QEMU can take a moment).</summary>
    private static async Task<string?> RemoveAsync(string directory, TimeSpan patience)
    {
        var deadline = DateTime.UtcNow + patience;
        while (true)
        {
            try
            {
                if (Directory.Exists(directory))
                {
                    Directory.Delete(directory);
                }

                return null;
            }
            catch (IOException e)
            {
                if (DateTime.UtcNow > deadline)
                {
                    var procs = Directory.Exists(directory) ? string.Join(' ', ReadProcs(directory).Take(5)) : string.Empty;
                    return $"{e.Message}{(procs.Length > 0 ? $" (processes still in it: {procs})" : string.Empty)}";
                }
            }

            await Task.Delay(50);
        }
    }

    /// <summary>mkdir -p; a v1 cpuset with no CPUs or memory nodes refuses processes, so every level from the
    /// hierarchy's root down that has none (new ones, or a parent made by someone who did not fill it) gets its
    /// parent's, as runc's cpuset manager does.</summary>
    private static void Create(CgroupMount mount, string directory)
    {
        Directory.CreateDirectory(directory);
        if (mount.IsV2 || !mount.Has("cpuset"))
        {
            return;
        }

        var levels = new List<string>();
        for (var d = directory; d.Length > mount.MountPoint.Length; d = System.IO.Path.GetDirectoryName(d)!)
        {
            levels.Add(d);
        }

        levels.Reverse();
        foreach (var level in levels)
        {
            var parent = System.IO.Path.GetDirectoryName(level)!;
            foreach (var file in new[] { "cpuset.cpus", "cpuset.mems" })
            {
                var own = System.IO.Path.Combine(level, file);
                if (File.Exists(own) && File.ReadAllText(own).Trim().Length == 0)
                {
                    File.WriteAllText(own, File.ReadAllText(System.IO.Path.Combine(parent, file)).Trim());
                }
            }
        }
    }

    private static string AbsolutePath(CgroupsPath path, CgroupMount mount, IReadOnlyDictionary<CgroupMount, string> origin)
    {
        if (path.IsAbsolute)
        {
            return path.Path;
        }

        // As runc: a relative cgroupfs path is below the caller's own cgroup.
        var own = origin.TryGetValue(mount, out var o) ? o : "/";
        return $"{own.TrimEnd('/')}/{path.Path}";
    }

    private static CgroupHierarchies ReadHierarchies()
    {
        try
        {
            return CgroupHierarchies.Read();
        }
        catch (InvalidOperationException e)
        {
            throw new HostCgroupException($"cannot place the pod in its cgroup: {e.Message}");
        }
    }

    private static string ReadProcCgroup(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cgroup");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HostCgroupException($"cannot read the cgroups of pid {pid}: {e.Message}");
        }
    }

    private static List<int> ReadProcs(string directory)
    {
        try
        {
            return File.ReadAllLines(System.IO.Path.Combine(directory, "cgroup.procs"))
                .Select(l => int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out var p) ? p : 0)
                .Where(p => p > 0)
                .ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    private static void WriteRecord(string recordPath, string driver, IEnumerable<string> lines)
    {
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(recordPath)!);
            File.WriteAllLines(recordPath, lines.Prepend(driver));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HostCgroupException($"cannot record the pod's cgroup in {recordPath}: {e.Message}");
        }
    }

    private static void TryWrite(string file, int pid)
    {
        try
        {
            File.WriteAllText(file, pid.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Nothing more to try: the shim stays where it is, which only delays the cgroup's removal to its exit.
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "sandbox {SandboxId}: pid {Pid} placed in the pod cgroup {Cgroup}")]
    private static partial void LogEntered(ILogger logger, string sandboxId, int pid, HostCgroup cgroup);

    [LoggerMessage(Level = LogLevel.Information, Message = "pod cgroup {Cgroup} left and removed")]
    private static partial void LogLeft(ILogger logger, HostCgroup cgroup);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot remove the pod cgroup {Path}: {Reason}")]
    private static partial void LogRemoveFailed(ILogger logger, string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot move pid {Pid} back to {Cgroup}: {Reason}; moving it to the hierarchy's root")]
    private static partial void LogMoveBackFailed(ILogger logger, int pid, string cgroup, string reason);
}
