using System.Security.Cryptography;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// Issue 10 item 6: one container of a pod cannot reach another's files in the guest. Both containers' root
/// filesystems live in the one share the guest mounts (at <see cref="GuestSharePath"/>/&lt;id&gt;/rootfs), so the
/// checks are the ways a hostile, unprivileged container (root, the default capabilities: no CAP_SYS_ADMIN, no
/// CAP_SYS_PTRACE) would look for a file it knows the name of: its whole tree, every /proc/&lt;pid&gt;/root it can see,
/// /proc/1/root, the guest's share path, mounting the share's 9p tag itself, and the agent's channel device.
/// </summary>
public static class ContainerIsolation
{
    /// <summary>Where the second container has its private (emptyDir-like) host directory.</summary>
    public const string PrivatePath = "/private";

    /// <summary>Where the guest agent mounts the pod's share (the shim's SandboxPaths.GuestSharePath).</summary>
    private const string GuestSharePath = "/run/csharp/shared";

    /// <summary>The share's 9p mount tag (the shim's SandboxPaths.ShareMountTag).</summary>
    private const string ShareMountTag = "csharpshare";

    /// <summary>
    /// <paramref name="victim"/> writes a marker in its rootfs and in <paramref name="privateDir"/> (bound at
    /// <see cref="PrivatePath"/>); <paramref name="hostile"/> must not find either, while it does find a marker of
    /// its own the same ways (so a check that finds nothing is known to be able to find something).
    /// </summary>
    public static async Task AssertUnreachableAsync(Scenario s, string hostile, string victim, string privateDir)
    {
        var c = s.Containerd;
        var tag = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var marker = $"marker-{tag}";
        var privateMarker = $"private-marker-{tag}";
        var own = $"own-marker-{tag}";

        await c.CtrOkAsync(Ctr.ExecArgs(victim, "plant", "sh", "-c", $"echo victim-secret > /{marker} && echo victim-private > {PrivatePath}/{privateMarker}"));
        await c.CtrOkAsync(Ctr.ExecArgs(hostile, "own", "sh", "-c", $"echo own-secret > /{own}"));
        // The victim's files are where the guest can reach them: in the pod's share, and in the bound host directory.
        Assert.True(File.Exists(Path.Combine(HostState.SandboxDirectory(hostile), "shared", victim, "rootfs", marker)), "the victim's marker is not in the pod's share");
        Assert.True(File.Exists(Path.Combine(privateDir, privateMarker)), "the victim's private marker is not in its host directory");

        async Task<ProcessResult> Hostile(string name, string script) =>
            await c.CtrAsync(Ctr.ExecArgs(hostile, name, "sh", "-c", script));

        // Its own tree (what `find / -name` reaches; /proc and /sys are walked below, by pid).
        var find = await Hostile("find", $"find / \\( -path /proc -o -path /sys \\) -prune -o \\( -name {marker} -o -name {privateMarker} -o -name {own} \\) -print");
        s.Write($"find in {hostile}: {find.Stdout.Trim()}");
        Assert.Equal($"/{own}\n", find.Stdout);

        // Every process it sees, their roots, /proc/1/root and the guest's share path: only its own marker.
        var roots = await Hostile("roots", string.Join("; ",
            $"for d in /proc/[0-9]*; do cat $d/root/{own} $d/root/{marker} $d/root{PrivatePath}/{privateMarker} $d/root{GuestSharePath}/{victim}/rootfs/{marker}; done 2>/dev/null",
            $"cat /proc/1/root/{marker} /proc/1/root{GuestSharePath}/{victim}/rootfs/{marker} {GuestSharePath}/{victim}/rootfs/{marker} 2>/dev/null",
            $"ls {GuestSharePath} /proc/1/root{GuestSharePath} 2>/dev/null",
            // Whose processes it sees: the victim's init (sleep 1002) is in another pid namespace. The bracket keeps
            // grep's own command line from matching.
            "echo \"sleep inits seen: $(for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline; echo; done | grep -c '^sleep 100[0-9] $')\"",
            "echo end"));
        s.Write($"/proc/*/root, /proc/1/root, {GuestSharePath} in {hostile}: {roots.Stdout.Trim()}");
        Assert.Contains("own-secret", roots.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("victim-", roots.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(victim, roots.Stdout, StringComparison.Ordinal);
        Assert.Contains("sleep inits seen: 1\n", roots.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("end\n", roots.Stdout, StringComparison.Ordinal);

        // The share's own 9p tag: mounting needs CAP_SYS_ADMIN, which an unprivileged container lacks.
        var mount = await Hostile("mount9p", $"mkdir -p /m9p && mount -t 9p -o trans=virtio,version=9p2000.L {ShareMountTag} /m9p; rc=$?; cat /m9p/{victim}/rootfs/{marker} 2>/dev/null; exit $rc");
        s.Write($"mount -t 9p {ShareMountTag} in {hostile}: exit {mount.ExitCode}: {mount.Stderr.Trim()}");
        Assert.True(mount.ExitCode != 0, $"an unprivileged container mounted the pod's share: {mount}");
        Assert.DoesNotContain("victim-", mount.Stdout, StringComparison.Ordinal);
        Assert.Contains("permission denied", mount.Stderr, StringComparison.OrdinalIgnoreCase);

        // The agent's channel: no virtio-serial port device (over vsock the agent admits only the host, AgentPeerTests).
        var dev = await Hostile("dev", "ls /dev /dev/virtio-ports 2>&1");
        s.Write($"/dev of {hostile}: {dev.Stdout.Replace('\n', ' ')}");
        Assert.DoesNotContain("vport", dev.Stdout, StringComparison.Ordinal);
        Assert.Contains("/dev/virtio-ports: No such file or directory", dev.Stdout, StringComparison.Ordinal);
    }
}
