using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// A pod's volumes as kubelet hands them to CRI (host paths it prepared: a hostPath directory and file, a read-only
/// mount, an emptyDir under the pod's own directory shared by two containers) and the files containerd writes for
/// the sandbox and bind-mounts into every container (/etc/hosts, /etc/resolv.conf from the pod's DNS config,
/// /etc/hostname). The host and the containers in the VM see each other's writes. One pod, one VM boot.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CriVolumeTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    private static readonly string[] Sleeper = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"];

    [CriFact]
    [Trait("containerd", "2.1")]
    public async Task Host_paths_read_only_mounts_empty_dirs_and_etc_files_reach_the_containers()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            // Where kubelet keeps a pod's volumes: <root>/pods/<uid>/volumes/<plugin>/<name>.
            var podDir = Directory.CreateDirectory(Path.Combine(containerd.Directory, "kubelet", "pods", Guid.NewGuid().ToString())).FullName;
            var hostData = Directory.CreateDirectory(Path.Combine(podDir, "host", "data")).FullName;
            var hostConfig = Directory.CreateDirectory(Path.Combine(podDir, "host", "config")).FullName;
            var hostFile = Path.Combine(podDir, "host", "app.conf");
            var emptyDir = Directory.CreateDirectory(Path.Combine(podDir, "volumes", "kubernetes.io~empty-dir", "scratch")).FullName;
            File.WriteAllText(Path.Combine(hostData, "from-host"), "written on the host\n");
            File.WriteAllText(Path.Combine(hostConfig, "settings"), "read only\n");
            File.WriteAllText(hostFile, "key=value\n");

            await using var pod = await CriPod.RunAsync(client, s, "cri-vol", config =>
            {
                config.DnsConfig = new DNSConfig
                {
                    Servers = { "10.87.0.53" },
                    Searches = { "e2e.svc.cluster.local" },
                    Options = { "ndots:5" },
                };
            });

            void Volumes(ContainerConfig c)
            {
                c.Mounts.Add(new Mount { HostPath = hostData, ContainerPath = "/data" });
                c.Mounts.Add(new Mount { HostPath = hostConfig, ContainerPath = "/config", Readonly = true });
                c.Mounts.Add(new Mount { HostPath = hostFile, ContainerPath = "/etc/app.conf" });
                c.Mounts.Add(new Mount { HostPath = emptyDir, ContainerPath = "/scratch" });
            }

            var writer = await pod.StartContainerAsync("writer", Volumes, Sleeper);
            var reader = await pod.StartContainerAsync("reader", c => c.Mounts.Add(new Mount { HostPath = emptyDir, ContainerPath = "/scratch" }), Sleeper);

            // hostPath, both ways: the container reads what the host wrote before it started and after, the host
            // reads what the container wrote.
            Assert.Equal("written on the host\n", await pod.ExecOkAsync(writer, "cat", "/data/from-host"));
            Assert.Equal("key=value\n", await pod.ExecOkAsync(writer, "cat", "/etc/app.conf"));
            await pod.ExecOkAsync(writer, "sh", "-c", "echo written in the vm > /data/from-container");
            Assert.Equal("written in the vm\n", File.ReadAllText(Path.Combine(hostData, "from-container")));
            File.WriteAllText(Path.Combine(hostData, "later"), "written on the host later\n");
            Assert.Equal("written on the host later\n", await pod.ExecOkAsync(writer, "cat", "/data/later"));
            await pod.ExecOkAsync(writer, "rm", "/data/from-host");
            Assert.False(File.Exists(Path.Combine(hostData, "from-host")), "a file removed in the container is still on the host");

            // Read-only: readable, every write refused, the host copy untouched.
            Assert.Equal("read only\n", await pod.ExecOkAsync(writer, "cat", "/config/settings"));
            foreach (var write in new[] { "echo x > /config/settings", "touch /config/new", "rm /config/settings" })
            {
                var refused = await pod.ExecSyncAsync(writer, 60, "sh", "-c", write);
                Assert.True(refused.ExitCode != 0, $"'{write}' on a read-only mount succeeded");
                Assert.Contains("Read-only file system", refused.Stderr.ToStringUtf8(), StringComparison.Ordinal);
            }

            Assert.Equal("read only\n", File.ReadAllText(Path.Combine(hostConfig, "settings")));
            Assert.Equal(["settings"], Directory.GetFiles(hostConfig).Select(Path.GetFileName));

            // emptyDir: one container writes, the other reads, and it is the directory kubelet made on the host.
            await pod.ExecOkAsync(writer, "sh", "-c", "echo shared > /scratch/note");
            Assert.Equal("shared\n", await pod.ExecOkAsync(reader, "cat", "/scratch/note"));
            Assert.Equal("shared\n", File.ReadAllText(Path.Combine(emptyDir, "note")));
            var readerOnly = await pod.ExecSyncAsync(reader, 60, "ls", "/data");
            Assert.True(readerOnly.ExitCode != 0, "the reader, which mounts no /data, sees one");

            await EtcFilesAsync(pod, s, [writer, reader]);

            await pod.StopAndRemoveAsync();
            foreach (var id in (string[])[pod.Id, writer, reader])
            {
                await HostState.AssertNothingLeftAsync(containerd, id);
            }

            // The volumes are kubelet's: the runtime leaves them, with what the containers wrote, and holds no mount on them.
            Assert.Equal("written in the vm\n", File.ReadAllText(Path.Combine(hostData, "from-container")));
            Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(podDir, StringComparison.Ordinal));
            Directory.Delete(podDir, recursive: true);
        });
    }

    /// <summary>/etc/hosts, /etc/resolv.conf and /etc/hostname in every container are the files containerd wrote
    /// for the sandbox (resolv.conf from the pod's DNS config, hostname from the pod's), as with runc.</summary>
    private static async Task EtcFilesAsync(CriPod pod, Scenario s, string[] containers)
    {
        var sandboxFiles = SandboxFilesDirectory(s.Containerd, pod.Id);
        s.Write($"containerd's files for the sandbox: {sandboxFiles}");
        foreach (var id in containers)
        {
            var resolv = await pod.ExecOkAsync(id, "cat", "/etc/resolv.conf");
            Assert.Contains("nameserver 10.87.0.53", resolv, StringComparison.Ordinal);
            Assert.Contains("search e2e.svc.cluster.local", resolv, StringComparison.Ordinal);
            Assert.Contains("options ndots:5", resolv, StringComparison.Ordinal);
            Assert.Equal(File.ReadAllText(Path.Combine(sandboxFiles, "resolv.conf")), resolv);
            Assert.Equal("cri-vol\n", await pod.ExecOkAsync(id, "cat", "/etc/hostname"));
            Assert.Equal(File.ReadAllText(Path.Combine(sandboxFiles, "hosts")), await pod.ExecOkAsync(id, "cat", "/etc/hosts"));
        }
    }

    /// <summary>Where containerd wrote hosts / resolv.conf / hostname for the sandbox: &lt;root&gt;/&lt;CRI plugin&gt;/sandboxes/&lt;id&gt;
    /// (the plugin's directory name differs between 1.x and 2.x).</summary>
    private static string SandboxFilesDirectory(PrivateContainerd containerd, string podId)
    {
        var found = Directory.EnumerateDirectories(Path.Combine(containerd.Directory, "root"), "*cri*")
            .Select(d => Path.Combine(d, "sandboxes", podId))
            .Where(d => File.Exists(Path.Combine(d, "hosts")))
            .ToList();
        Assert.True(found.Count == 1, $"no single sandboxes/{podId}/hosts under {containerd.Directory}/root: [{string.Join(", ", found)}]");
        return found[0];
    }
}
