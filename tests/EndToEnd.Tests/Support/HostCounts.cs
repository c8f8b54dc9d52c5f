using System.Globalization;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// What pods leave on the host when they leak, counted: containerd's open fds, our shims and QEMUs, mounts under the
/// sandbox root or the containerd's dir, shim sockets, sandbox directories, network devices (taps, veths), network
/// namespaces, cgroups and bundles.
/// Cycle tests compare these after each pod with the counts before the first one, but for containerd's fds, which
/// are compared with their number after the first pod (which warms containerd: lazily opened files stay open).
/// </summary>
public sealed record HostCounts(
    int ContainerdFds, int Shims, int Qemus, int Mounts, int ShimSockets, int SandboxDirectories, int NetDevices, int NetNamespaces, int Cgroups, int Bundles)
{
    public static HostCounts Take(PrivateContainerd containerd) => new(
        FdCount(containerd.Pid),
        HostState.Processes().Count(p => p.Argv.Count > 0 && Path.GetFileName(p.Argv[0]) == "containerd-shim-csharp-v1"
            && p.Argv.Contains(containerd.Socket)),
        HostState.Processes().Count(p => p.Comm.StartsWith("qemu-system", StringComparison.Ordinal)
            && p.Argv.Any(a => a.Contains(E2EEnvironment.SandboxRoot + "/", StringComparison.Ordinal))),
        File.ReadLines("/proc/self/mountinfo").Count(l => l.Contains(E2EEnvironment.SandboxRoot, StringComparison.Ordinal)
            || l.Contains(containerd.Directory, StringComparison.Ordinal)),
        Entries(E2EEnvironment.ShimSocketDirectory),
        SandboxEntries(),
        Entries("/sys/class/net"),
        Entries("/run/netns"),
        CgroupCount(),
        Entries(Path.GetDirectoryName(containerd.BundleDirectory("x"))!));

    /// <summary>Names each count that differs from <paramref name="baseline"/>, with both values; empty when equal.
    /// containerd's fds may only be at most the baseline's: it keeps some files open lazily (the first pod warms it).</summary>
    public IReadOnlyList<string> DifferencesFrom(HostCounts baseline)
    {
        var diffs = new List<string>();
        void Check(string what, int now, int then)
        {
            if (now != then)
            {
                diffs.Add($"{what}: {then} -> {now}");
            }
        }

        if (ContainerdFds > baseline.ContainerdFds)
        {
            diffs.Add($"containerd fds: {baseline.ContainerdFds} -> {ContainerdFds}");
        }

        Check("shims", Shims, baseline.Shims);
        Check("qemus", Qemus, baseline.Qemus);
        Check("mounts", Mounts, baseline.Mounts);
        Check("shim sockets", ShimSockets, baseline.ShimSockets);
        Check("sandbox dirs", SandboxDirectories, baseline.SandboxDirectories);
        Check("net devices", NetDevices, baseline.NetDevices);
        Check("netns", NetNamespaces, baseline.NetNamespaces);
        // Other work on a shared host removes cgroups of its own (seen in the soak: 45 -> 44); a leak only adds one.
        if (Cgroups > baseline.Cgroups)
        {
            diffs.Add($"cgroups: {baseline.Cgroups} -> {Cgroups}");
        }

        Check("bundles", Bundles, baseline.Bundles);
        return diffs;
    }

    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"containerd fds {ContainerdFds}, shims {Shims}, qemus {Qemus}, mounts {Mounts}, shim sockets {ShimSockets}, sandbox dirs {SandboxDirectories}, net devices {NetDevices}, netns {NetNamespaces}, cgroups {Cgroups}, bundles {Bundles}");

    /// <summary>Waits until the counts equal <paramref name="baseline"/> (shims exit, and containerd closes their
    /// connections, a moment after the last delete); fails naming what differs.</summary>
    public static async Task<HostCounts> SettleAtAsync(PrivateContainerd containerd, HostCounts baseline, TimeSpan timeout) =>
        await Eventually.GetAsync(
            () =>
            {
                var now = Take(containerd);
                return Task.FromResult((now.DifferencesFrom(baseline).Count == 0, now));
            },
            timeout,
            now => $"leaked since the baseline: {string.Join("; ", now.DifferencesFrom(baseline))}");

    public static int FdCount(int pid)
    {
        try
        {
            return Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Count();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }

    /// <summary>Pods' directories only: the dot-entries beside them (the VM templates, the KVM verdicts) are
    /// per host and stay by design.</summary>
    private static int SandboxEntries() =>
        Directory.Exists(E2EEnvironment.SandboxRoot)
            ? Directory.EnumerateFileSystemEntries(E2EEnvironment.SandboxRoot).Count(e => !Path.GetFileName(e).StartsWith('.'))
            : 0;

    private static int Entries(string dir)
    {
        try
        {
            return Directory.EnumerateFileSystemEntries(dir).Count();
        }
        catch (DirectoryNotFoundException)
        {
            return 0;
        }
    }

    /// <summary>cgroup directories under every v1 hierarchy and the v2 one, three levels deep (containerd's
    /// /&lt;namespace&gt;/&lt;id&gt; and CRI's kubepods paths are within that).</summary>
    private static int CgroupCount()
    {
        var count = 0;
        foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup"))
        {
            try
            {
                count += Directory.EnumerateDirectories(hierarchy, "*", new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 2, IgnoreInaccessible = true }).Count();
            }
            catch (IOException)
            {
                // A cgroup removed while listed.
            }
        }

        return count;
    }
}
