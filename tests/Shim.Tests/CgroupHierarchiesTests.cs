using ShimV2.Shim.Cgroups;

namespace ShimV2.Shim.Tests;

/// <summary>Which hierarchies a pod cgroup is made in, and where a process is, on v1 (hybrid) and v2 hosts.</summary>
public sealed class CgroupHierarchiesTests
{
    // As on the build machines (Debian, no systemd as PID 1): v1 controllers, a named systemd hierarchy, and
    // hybrid's controller-less cgroup2 at /sys/fs/cgroup/unified.
    private const string Hybrid = """
        30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
        33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
        34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
        40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        41 22 0:38 / /proc/sys/fs/binfmt_misc rw,relatime - binfmt_misc binfmt_misc rw
        """;

    private const string Unified = """
        25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        26 22 0:24 / /sys/fs/bpf rw,relatime - bpf bpf rw
        """;

    [Fact]
    public void On_v1_every_v1_hierarchy_is_a_target_and_hybrids_cgroup2_is_not()
    {
        var h = CgroupHierarchies.Parse(Hybrid);
        Assert.False(h.Unified);
        Assert.Equal(
            new[] { "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd" },
            h.Targets.Select(t => t.MountPoint));
        Assert.Equal(new[] { "cpu", "cpuacct" }, h.Targets[0].Controllers);
        Assert.Equal(new[] { "name=systemd" }, h.Targets[3].Controllers);
        Assert.Equal("/sys/fs/cgroup/memory/kubepods/pod1/abc", h.Targets[2].DirectoryOf("/kubepods/pod1/abc"));
    }

    [Fact]
    public void On_v2_the_unified_mount_is_the_one_target()
    {
        var h = CgroupHierarchies.Parse(Unified);
        Assert.True(h.Unified);
        var target = Assert.Single(h.Targets);
        Assert.True(target.IsV2);
        Assert.Equal("/sys/fs/cgroup/kubepods/besteffort/pod1/abc", target.DirectoryOf("/kubepods/besteffort/pod1/abc"));
        Assert.Equal("/sys/fs/cgroup", target.DirectoryOf("/"));
    }

    [Fact]
    public void A_process_cgroup_file_maps_onto_the_targets()
    {
        var h = CgroupHierarchies.Parse(Hybrid);
        var membership = h.MembershipOf("""
            9:name=systemd:/
            4:memory:/process_api/2a63
            3:cpuset:/
            1:cpu,cpuacct:/default/x
            0::/
            """);
        Assert.Equal("/default/x", membership[h.Targets[0]]);
        Assert.Equal("/", membership[h.Targets[1]]);
        Assert.Equal("/process_api/2a63", membership[h.Targets[2]]);
        Assert.Equal("/", membership[h.Targets[3]]);

        var v2 = CgroupHierarchies.Parse(Unified);
        Assert.Equal("/system.slice/containerd.service", v2.MembershipOf("0::/system.slice/containerd.service")[v2.Targets[0]]);
    }

    [Fact]
    public void A_mount_of_a_subtree_maps_paths_below_its_root()
    {
        var h = CgroupHierarchies.Parse("25 22 0:23 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw");
        Assert.Equal("/sys/fs/cgroup/pod1/abc", h.Targets[0].DirectoryOf("/kubepods/pod1/abc"));
    }

    [Fact]
    public void No_cgroup_file_system_is_an_error() =>
        Assert.Throws<InvalidOperationException>(() => CgroupHierarchies.Parse("26 22 0:24 / /sys/fs/bpf rw,relatime - bpf bpf rw"));
}
