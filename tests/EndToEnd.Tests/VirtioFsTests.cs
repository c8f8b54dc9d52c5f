using System.Diagnostics;
using System.Text.Json.Nodes;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 11, item 6: sharedFs virtio-fs. A pod's container root filesystem and a bind-mounted volume reach the guest
/// through the pod's own virtiofsd (read and write both ways), and `delete` after a dead shim stops that virtiofsd as
/// it stops QEMU. One pod for both (the CI budget); the ordinary stop, with QEMU, is
/// QemuVmTests.A_virtio_fs_vm_runs_with_its_virtiofsd_hot_plugs_shared_memory_and_stops_both.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class VirtioFsTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    [VmFact]
    public Task A_virtio_fs_pod_reads_and_writes_its_rootfs_and_a_volume_and_delete_after_a_dead_shim_stops_its_virtiofsd() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var events = await s.EventsAsync();
        var id = s.NewId("vfs");
        var volume = Directory.CreateDirectory(Path.Combine(c.Directory, $"{id}-volume")).FullName;
        await File.WriteAllTextAsync(Path.Combine(volume, "from-host"), "host wrote this\n");
        await c.CtrOkAsync(
            Ctr.RunArgsWithConfig(await VirtioFsConfigAsync(c, id), id, ["-d", "--mount", $"type=bind,src={volume},dst=/vol,options=rbind:rw"], "sleep", "1000"),
            Ctr.BootTimeout);
        await events.WaitForAsync(e => e.Topic == "/tasks/start" && e.ContainerId == id, Ctr.EventTimeout, $"/tasks/start of {id}");

        var virtiofsd = VirtiofsdProcesses(id);
        Assert.NotEmpty(virtiofsd);
        var qemu = Assert.Single(HostState.QemuProcesses(id));
        Assert.Contains(qemu.Argv, a => a.StartsWith("vhost-user-fs-pci,", StringComparison.Ordinal));
        Assert.Contains(qemu.Argv, a => a.StartsWith("memory-backend-memfd,", StringComparison.Ordinal) && a.EndsWith(",share=on", StringComparison.Ordinal));

        // The container's / and /vol are virtiofs mounts in the guest; each side sees what the other wrote.
        var r = await c.CtrAsync(
            Ctr.ExecArgs(id, "rw", "sh", "-c",
                "cat /vol/from-host && echo guest wrote this > /vol/from-guest && echo rootfs ok > /etc/written && cat /etc/written"
                + " && awk '$5 == \"/\" || $5 == \"/vol\" { print $5, $(NF-2) }' /proc/self/mountinfo"),
            Ctr.CtrTimeout);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("host wrote this\nrootfs ok\n/ virtiofs\n/vol virtiofs\n", r.Stdout);
        Assert.Equal("guest wrote this\n", await File.ReadAllTextAsync(Path.Combine(volume, "from-guest")));

        // The shim dies (kill -9): containerd's `delete` must stop QEMU and the virtiofsd recorded beside it.
        var shim = Assert.Single(HostState.ShimProcesses(id));
        Assert.True(File.Exists(Path.Combine(HostState.SandboxDirectory(id), "vm", "virtiofsd.identity")), "the shim records virtiofsd's identity");
        s.Write($"kill -9 shim {shim.Pid} (virtiofsd {string.Join(", ", virtiofsd.Select(p => p.Pid))})");
        Process.GetProcessById(shim.Pid).Kill();

        await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id, Ctr.EventTimeout * 2, $"/tasks/exit of {id}");
        var rm = await c.CtrAsync(["tasks", "delete", id]);
        Assert.True(rm.ExitCode == 0 || rm.Stderr.Contains("not found", StringComparison.Ordinal), $"ctr task rm: {rm}");
        await c.CtrOkAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id, TimeSpan.FromSeconds(60));
        Assert.DoesNotContain(virtiofsd, p => IsAlive(p.Pid));
        Assert.Empty(VirtiofsdLockFiles(id));
        Assert.Equal("guest wrote this\n", await File.ReadAllTextAsync(Path.Combine(volume, "from-guest")));
    });

    private static async Task<string> VirtioFsConfigAsync(PrivateContainerd c, string id)
    {
        var config = JsonNode.Parse(await File.ReadAllTextAsync(E2EEnvironment.RuntimeConfig))!;
        config["sharedFs"] = "virtio-fs";
        var path = Path.Combine(c.Directory, $"{id}.json");
        await File.WriteAllTextAsync(path, config.ToJsonString());
        return path;
    }

    /// <summary>virtiofsd processes serving this pod's socket (the parent and, in its pid namespace, its worker).</summary>
    private static List<ProcInfo> VirtiofsdProcesses(string id)
    {
        var socket = Path.Combine(HostState.SandboxDirectory(id), "vm", "virtiofs.sock");
        return HostState.Processes()
            .Where(p => p.Comm == "virtiofsd" && p.Argv.Any(a => a == $"--socket-path={socket}" || a == socket)).ToList();
    }

    private static IEnumerable<string> VirtiofsdLockFiles(string id) =>
        Directory.Exists("/var/run/virtiofsd")
            ? Directory.EnumerateFiles("/var/run/virtiofsd").Where(f => f.Contains($".{id}.", StringComparison.Ordinal))
            : [];

    private static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] is not ('Z' or 'X');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
