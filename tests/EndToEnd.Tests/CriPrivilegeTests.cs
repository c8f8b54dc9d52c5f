using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 9's privilege checks in one pod (one VM boot), as a Kubernetes user would make them: a privileged container
/// has every capability and the VM's devices, and the guest kernel loads the bridge module when it creates a bridge;
/// NET_ADMIN alone is enough for that; a setuid-root binary escalates exactly when noNewPrivileges is false; a
/// Bidirectional volume (rootfsPropagation rshared, an rshared bind) and a HostToContainer one start, the container's
/// root and the mounts it makes under the volume are shared, and the pod's other container of that volume sees such a
/// mount. Against runc (E2E_RUNTIME) the same checks hold.
/// </summary>
public sealed partial class CriPodTests
{
    /// <summary>The image of eng/lib/setuid-image.sh: /pause, and /euid (setuid root) printing "euid=N uid=N".</summary>
    private const string SetuidImage = "localhost/csharp-e2e/setuid:1";

    [CriFact]
    [Trait("containerd", "2.1")]
    public async Task Privileged_net_admin_setuid_and_shared_propagation_behave_as_with_runc()
    {
        var (containerd, client) = await cri.GetAsync();
        // Bidirectional needs a shared mount on the host (containerd checks): a tmpfs of the test's own, made shared.
        var volume = Path.Combine(containerd.Directory, "shared-volume");
        Directory.CreateDirectory(volume);
        await RunHostAsync("mount", "-t", "tmpfs", "-o", "size=1m", "e2e-shared", volume);
        try
        {
            await RunHostAsync("mount", "--make-shared", volume);
            await Scenario.RunAsync(containerd, output, async s =>
            {
                // containerd allows a privileged container only in a privileged sandbox.
                await using var pod = await CriPod.RunAsync(client, s, "cri-priv", c => c.Linux.SecurityContext.Privileged = true);

                var privileged = await pod.StartContainerAsync("privileged", c =>
                {
                    c.Linux.SecurityContext.Privileged = true;
                    c.Mounts.Add(new Mount { ContainerPath = "/shared", HostPath = volume, Propagation = MountPropagation.PropagationBidirectional });
                }, Idler);
                var status = await pod.StatusAsync(verbose: false);
                Assert.Equal(PodSandboxState.SandboxReady, status.Status.State);

                // containerd gives a privileged container every capability it has itself (root on the build
                // machines lacks CAP_SYS_RESOURCE), as it does with runc: the container's set is this test's.
                var caps = await pod.ExecOkAsync(privileged, "grep", "CapEff", "/proc/self/status");
                Assert.Equal(File.ReadLines("/proc/self/status").Single(l => l.StartsWith("CapEff:", StringComparison.Ordinal)), caps.Trim());
                await pod.ExecOkAsync(privileged, "test", "-c", "/dev/kmsg");
                // The custom kernel has the bridge built in; the generic one loads it on demand (/sbin/modprobe
                // "rtnl-link-bridge"), not at boot.
                await pod.ExecOkAsync(privileged, "ip", "link", "add", "e2ebr0", "type", "bridge");
                Assert.Contains("e2ebr0", await pod.ExecOkAsync(privileged, "ip", "-o", "link", "show", "e2ebr0"), StringComparison.Ordinal);
                await pod.ExecOkAsync(privileged, "ip", "link", "del", "e2ebr0");

                var netAdmin = await pod.StartContainerAsync("net-admin", c =>
                {
                    c.Linux.SecurityContext.Capabilities = new Capability();
                    c.Linux.SecurityContext.Capabilities.AddCapabilities.Add("NET_ADMIN");
                    c.Mounts.Add(new Mount { ContainerPath = "/shared", HostPath = volume, Propagation = MountPropagation.PropagationHostToContainer });
                }, Idler);
                await pod.ExecOkAsync(netAdmin, "ip", "link", "add", "e2ebr1", "type", "bridge");
                await pod.ExecOkAsync(netAdmin, "ip", "link", "del", "e2ebr1");

                // A mount made under the Bidirectional volume (an rshared bind in an rshared root) is shared, and
                // the pod's HostToContainer container of the same volume sees it.
                await pod.ExecOkAsync(privileged, "sh", "-c", "mkdir -p /shared/sub && mount -t tmpfs -o size=64k e2e-inner /shared/sub && echo inner >/shared/sub/file");
                var mounts = await pod.ExecOkAsync(privileged, "cat", "/proc/self/mountinfo");
                Assert.True(IsSharedMount(mounts, "/"), $"the container's root is not shared (rootfsPropagation rshared):\n{mounts}");
                Assert.True(IsSharedMount(mounts, "/shared"), $"the Bidirectional volume is not a shared mount:\n{mounts}");
                Assert.True(IsSharedMount(mounts, "/shared/sub"), $"the mount made under the volume is not shared:\n{mounts}");
                var seen = await pod.ExecSyncAsync(netAdmin, 60, "cat", "/shared/sub/file");
                Assert.True((seen.ExitCode, seen.Stdout.ToStringUtf8()) == (0, "inner\n"),
                    $"the other container does not see the mount under the shared volume: exit {seen.ExitCode}, {seen.Stdout.ToStringUtf8()}{seen.Stderr.ToStringUtf8()}");

                var plain = await pod.StartContainerAsync("setuid", c => Setuid(c, noNewPrivs: false), "/pause");
                var confined = await pod.StartContainerAsync("no-new-privs", c => Setuid(c, noNewPrivs: true), "/pause");
                Assert.Equal("euid=0 uid=65534\n", await pod.ExecOkAsync(plain, "/euid"));
                Assert.Equal("euid=65534 uid=65534\n", await pod.ExecOkAsync(confined, "/euid"));

                await pod.StopAndRemoveAsync();
                foreach (var id in new[] { privileged, netAdmin, plain, confined, pod.Id })
                {
                    await HostState.AssertNothingLeftAsync(containerd, id);
                }
            });
        }
        finally
        {
            await RunHostAsync("umount", "-R", "-l", volume);
        }
    }

    /// <summary>Whether /proc/self/mountinfo has <paramref name="mountPoint"/> (its topmost mount) in a peer group.</summary>
    private static bool IsSharedMount(string mountinfo, string mountPoint) =>
        mountinfo.Split('\n').Select(l => l.Split(' ')).LastOrDefault(f => f.Length > 6 && f[4] == mountPoint) is { } fields
        && fields.Skip(6).TakeWhile(f => f != "-").Any(f => f.StartsWith("shared:", StringComparison.Ordinal));

    private static void Setuid(ContainerConfig config, bool noNewPrivs)
    {
        config.Image = new ImageSpec { Image = SetuidImage };
        config.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 65534 };
        config.Linux.SecurityContext.NoNewPrivs = noNewPrivs;
    }

    private static async Task RunHostAsync(string file, params string[] args)
    {
        var r = await HostProcess.RunAsync(file, args, TimeSpan.FromSeconds(30));
        Assert.True(r.ExitCode == 0, $"{HostProcess.Render(file, args)} exited {r.ExitCode}: {r.Stderr}");
    }
}
