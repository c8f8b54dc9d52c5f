using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Shim.Cgroups;

namespace ShimV2.Shim.Tests;

/// <summary>
/// The cgroupfs driver for real on this host's cgroups (v1 or v2), with a `sleep` child standing in for the shim:
/// made (a new v1 cpuset gets its parent's CPUs, or the move fails), entered, left (the process back where it was)
/// and removed; one that exists with processes in it is refused; `delete`'s cleanup removes a recorded one.
/// </summary>
public sealed class HostCgroupTests : IDisposable
{
    private readonly string _parent = $"/csharp-shim-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
    private readonly string _record = Path.Combine(Directory.CreateTempSubdirectory("csharp-cgroup-").FullName, HostCgroup.RecordFileName);
    private readonly List<Process> _children = [];

    [CgroupFsFact]
    public async Task A_process_enters_a_new_cgroup_in_every_hierarchy_and_leaves_it_removed()
    {
        var child = Sleep();
        var before = File.ReadAllText($"/proc/{child.Id}/cgroup");
        var path = CgroupsPath.Parse($"{_parent}/pod1/sandbox");

        var cgroup = await HostCgroup.EnterAsync(path, child.Id, "sandbox", _record, NullLogger.Instance, CancellationToken.None);
        var hierarchies = CgroupHierarchies.Read();
        Assert.Equal(hierarchies.Targets.Count, cgroup.Directories.Count);
        Assert.All(cgroup.Directories, d => Assert.True(Directory.Exists(d), $"{d} was not made"));
        Assert.True(cgroup.Contains(child.Id), File.ReadAllText($"/proc/{child.Id}/cgroup"));
        Assert.All(hierarchies.MembershipOf(File.ReadAllText($"/proc/{child.Id}/cgroup")).Values, p => Assert.Equal(path.Path, p));
        Assert.Equal(new[] { "cgroupfs" }.Concat(cgroup.Directories), File.ReadAllLines(_record));

        // QEMU's way in: another process added.
        var other = Sleep();
        cgroup.Add(other.Id);
        Assert.True(cgroup.Contains(other.Id));
        Kill(other);

        await cgroup.LeaveAsync(CancellationToken.None);
        Assert.Equal(before, File.ReadAllText($"/proc/{child.Id}/cgroup"));
        Assert.All(cgroup.Directories, d => Assert.False(Directory.Exists(d), $"{d} is still there"));
        Assert.True(hierarchies.Targets.All(t => Directory.Exists(t.DirectoryOf($"{_parent}/pod1"))), "the parent (kubelet's) was removed too");
        Assert.False(File.Exists(_record));
    }

    [CgroupFsFact]
    public async Task An_existing_empty_cgroup_is_taken_and_one_with_processes_is_refused()
    {
        var path = CgroupsPath.Parse($"{_parent}/taken");
        var first = Sleep();
        var cgroup = await HostCgroup.EnterAsync(path, first.Id, "taken", _record, NullLogger.Instance, CancellationToken.None);

        var second = Sleep();
        var record2 = _record + ".2";
        var e = await Assert.ThrowsAsync<HostCgroupException>(
            () => HostCgroup.EnterAsync(path, second.Id, "taken", record2, NullLogger.Instance, CancellationToken.None));
        Assert.Contains("already has processes", e.Message, StringComparison.Ordinal);
        Assert.Contains(first.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
        Assert.False(cgroup.Contains(second.Id));
        Assert.False(File.Exists(record2));

        // Emptied (the process moved out without removing it, as after a crash of a pod's previous shim): taken.
        Kill(first);
        var again = await HostCgroup.EnterAsync(path, second.Id, "taken", record2, NullLogger.Instance, CancellationToken.None);
        Assert.True(again.Contains(second.Id));
        await again.LeaveAsync(CancellationToken.None);
        Assert.All(again.Directories, d => Assert.False(Directory.Exists(d)));
    }

    [CgroupFsFact]
    public async Task Delete_after_a_crash_removes_the_recorded_cgroup()
    {
        var child = Sleep();
        var cgroup = await HostCgroup.EnterAsync(CgroupsPath.Parse($"{_parent}/crashed"), child.Id, "crashed", _record, NullLogger.Instance, CancellationToken.None);
        Kill(child);

        Assert.Null(await HostCgroup.RemoveRecordedAsync(_record));
        Assert.All(cgroup.Directories, d => Assert.False(Directory.Exists(d), $"{d} is still there"));
        Assert.False(File.Exists(_record));
        Assert.Null(await HostCgroup.RemoveRecordedAsync(_record));
    }

    public void Dispose()
    {
        foreach (var child in _children)
        {
            Kill(child);
        }

        foreach (var mount in CgroupHierarchies.Read().Targets)
        {
            var root = mount.DirectoryOf(_parent);
            if (!Directory.Exists(root))
            {
                continue;
            }

            foreach (var dir in Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).Append(root))
            {
                Directory.Delete(dir);
            }
        }
    }

    private Process Sleep()
    {
        var p = Process.Start(new ProcessStartInfo("sleep", "600") { UseShellExecute = false })!;
        _children.Add(p);
        return p;
    }

    private static void Kill(Process p)
    {
        if (!p.HasExited)
        {
            p.Kill();
        }

        p.WaitForExit();
    }
}

/// <summary>Needs root and a writable cgroup file system.</summary>
public sealed class CgroupFsFactAttribute : FactAttribute
{
    public CgroupFsFactAttribute()
    {
        if (Environment.UserName != "root")
        {
            Skip = "needs root to make cgroups";
        }
        else if (!File.Exists("/proc/self/cgroup") || !Directory.Exists("/sys/fs/cgroup"))
        {
            Skip = "no cgroup file system at /sys/fs/cgroup";
        }
    }
}
