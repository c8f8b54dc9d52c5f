using System.Globalization;
using ShimV2.GuestAgent.Native;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Cgroups;

/// <summary>
/// A container's cgroup v2 directory (<c>/sys/fs/cgroup/containers/&lt;id&gt;</c>; the spec's cgroupsPath is a host
/// path and is not used). Every process of the container, init and execs, is placed here.
/// </summary>
internal sealed class Cgroup
{
    public const string DefaultRoot = "/sys/fs/cgroup";
    public const string ParentName = "containers";

    private Cgroup(string path)
    {
        Path = path;
    }

    public string Path { get; }

    /// <summary>Whether cgroup v2 is mounted at root (a cgroup.controllers file exists).</summary>
    public static bool IsAvailable(string root = DefaultRoot) => File.Exists(System.IO.Path.Combine(root, "cgroup.controllers"));

    /// <summary>Creates the container's cgroup with every controller its parent offers enabled for it.</summary>
    public static Cgroup Create(string id, string root = DefaultRoot)
    {
        var parent = System.IO.Path.Combine(root, ParentName);
        Directory.CreateDirectory(parent);
        EnableControllers(parent);
        var path = System.IO.Path.Combine(parent, id);
        if (Directory.Exists(path))
        {
            // A leftover of a container with the same id whose removal failed: reuse it only if it is empty.
            if (!string.IsNullOrWhiteSpace(KernelFiles.TryRead(System.IO.Path.Combine(path, "cgroup.procs"))))
            {
                throw AgentException.AlreadyExists($"cgroup {path} still has processes");
            }
        }
        else
        {
            Directory.CreateDirectory(path);
        }

        return new Cgroup(path);
    }

    /// <summary>Applies settings; a failing required one throws InvalidArgument naming the file and value.</summary>
    public void Apply(IEnumerable<CgroupSetting> settings)
    {
        foreach (var setting in settings)
        {
            var file = System.IO.Path.Combine(Path, setting.File);
            if (setting.Optional && !File.Exists(file))
            {
                continue;
            }

            try
            {
                KernelFiles.Write(file, setting.Value);
            }
            catch (NativeIOException e) when (e.Errno == Libc.ENOENT)
            {
                throw AgentException.InvalidArgument($"cgroup: {setting.File} is not supported by the guest kernel");
            }
            catch (NativeIOException e)
            {
                throw AgentException.InvalidArgument($"cgroup: cannot set {setting.File} to \"{setting.Value}\": {Libc.StrError(e.Errno)}");
            }
        }
    }

    public void AddProcess(int pid) => KernelFiles.Write(System.IO.Path.Combine(Path, "cgroup.procs"), pid.ToString(CultureInfo.InvariantCulture));

    /// <summary>The pids in the cgroup, as the agent's PID namespace sees them.</summary>
    public IReadOnlyList<int> Processes()
    {
        var text = KernelFiles.TryRead(System.IO.Path.Combine(Path, "cgroup.procs")) ?? "";
        var pids = new List<int>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    /// <summary>Sends a signal to every process; SIGKILL uses cgroup.kill (atomic against forks) when the kernel has it.</summary>
    public void Signal(int signal)
    {
        var killFile = System.IO.Path.Combine(Path, "cgroup.kill");
        if (signal == Libc.SIGKILL && File.Exists(killFile))
        {
            KernelFiles.Write(killFile, "1");
            return;
        }

        foreach (var pid in Processes())
        {
            Libc.kill(pid, signal);
        }
    }

    /// <summary>Freezes or thaws, and waits until cgroup.events says it is done.</summary>
    public void SetFrozen(bool frozen, TimeSpan timeout)
    {
        KernelFiles.Write(System.IO.Path.Combine(Path, "cgroup.freeze"), frozen ? "1" : "0");
        if (!WaitForEvent("frozen", frozen ? 1UL : 0UL, timeout))
        {
            throw new AgentException(TtrpcStatusCode.DeadlineExceeded, $"cgroup {Path} did not {(frozen ? "freeze" : "thaw")} within {timeout.TotalSeconds:0} s");
        }
    }

    public bool IsFrozen => CgroupStats.ParseFlatKeyed(KernelFiles.TryRead(System.IO.Path.Combine(Path, "cgroup.events"))).GetValueOrDefault("frozen") == 1;

    /// <summary>Waits until no process is left (cgroup.events populated 0); false on timeout.</summary>
    public bool WaitEmpty(TimeSpan timeout) => WaitForEvent("populated", 0, timeout);

    /// <summary>Removes the (empty) directory.</summary>
    public void Remove()
    {
        if (!Directory.Exists(Path))
        {
            return;
        }

        Directory.Delete(Path);
    }

    public CgroupStatsSnapshot Stats() => CgroupStats.FromFiles(file => KernelFiles.TryRead(System.IO.Path.Combine(Path, file)));

    /// <summary>The oom_kill count of memory.events (0 without the memory controller).</summary>
    public ulong OomKills() =>
        CgroupStats.ParseFlatKeyed(KernelFiles.TryRead(System.IO.Path.Combine(Path, "memory.events"))).GetValueOrDefault("oom_kill");

    private static void EnableControllers(string parent)
    {
        var available = KernelFiles.TryRead(System.IO.Path.Combine(parent, "cgroup.controllers"))?.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
        var enabled = KernelFiles.TryRead(System.IO.Path.Combine(parent, "cgroup.subtree_control"))?.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
        foreach (var controller in available.Except(enabled))
        {
            try
            {
                KernelFiles.Write(System.IO.Path.Combine(parent, "cgroup.subtree_control"), "+" + controller);
            }
            catch (NativeIOException)
            {
                // A controller that cannot be delegated (e.g. a realtime cpu setting): the container goes without it.
            }
        }
    }

    private bool WaitForEvent(string key, ulong value, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        using var events = new KernfsFile(System.IO.Path.Combine(Path, "cgroup.events"));
        while (true)
        {
            if (CgroupStats.ParseFlatKeyed(events.Read()).GetValueOrDefault(key) == value)
            {
                return true;
            }

            var left = deadline - Environment.TickCount64;
            if (left <= 0)
            {
                return false;
            }

            events.WaitChanged((int)Math.Min(left, int.MaxValue));
        }
    }
}
