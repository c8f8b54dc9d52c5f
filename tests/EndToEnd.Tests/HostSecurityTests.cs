namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 10 item 6 on a live pod started through containerd: what another user of the node can reach of it, and what
/// a guest that took over its QEMU could do on the host.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class HostSecurityTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    private const int Nobody = 65534;

    /// <summary>
    /// The pod's directories and sockets are root's alone: a process running as nobody cannot list the pod's
    /// directory nor connect to the shim's socket, QMP or the agent's socket (root can: the checks can fail); QEMU runs
    /// under its seccomp filter with no_new_privs, and exports only the pod's own share.
    /// </summary>
    [VmFact]
    public Task Another_user_reaches_nothing_of_a_pod_and_qemu_is_confined() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var id = s.NewId("hostsec");
        await c.CtrOkAsync(Ctr.RunArgs(id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);

        var pod = HostState.SandboxDirectory(id);
        var vm = Path.Combine(pod, "vm");
        var shimSocket = ShimClient.SocketPath(c, id);
        string[] sockets = [shimSocket, Path.Combine(vm, "qmp.sock"), Path.Combine(vm, "agent.sock")];
        foreach (var path in new[] { E2EEnvironment.SandboxRoot, pod, vm, Path.Combine(pod, "shared") }.Concat(sockets))
        {
            var mode = File.GetUnixFileMode(path);
            s.Write($"{path}: {Convert.ToString((int)mode, 8)}");
            Assert.True(
                (mode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute)) == 0,
                $"{path} is open to other users: {Convert.ToString((int)mode, 8)}");
        }

        // Root connects to the shim's socket (so a refusal below is the permission, not a dead socket).
        var asRoot = await HostProcess.RunAsync("socat", ["-u", "OPEN:/dev/null", $"UNIX-CONNECT:{shimSocket}"], TimeSpan.FromSeconds(10));
        Assert.True(asRoot.ExitCode == 0, $"root cannot connect to the shim's socket: {asRoot}");
        foreach (var socket in sockets)
        {
            var r = await AsNobodyAsync("socat", "-u", "OPEN:/dev/null", $"UNIX-CONNECT:{socket}");
            s.Write($"nobody connecting to {socket}: exit {r.ExitCode}: {r.Stderr.Trim()}");
            Assert.True(r.ExitCode != 0 && r.Stderr.Contains("Permission denied", StringComparison.Ordinal), $"nobody connected to {socket}: {r}");
        }

        var list = await AsNobodyAsync("ls", pod);
        Assert.True(list.ExitCode != 0 && list.Stderr.Contains("Permission denied", StringComparison.Ordinal), $"nobody listed {pod}: {list}");

        var qemu = Assert.Single(HostState.QemuProcesses(id));
        var status = File.ReadAllLines($"/proc/{qemu.Pid}/status");
        Assert.Contains("Seccomp:\t2", status);
        Assert.Contains("NoNewPrivs:\t1", status);
        var argv = qemu.Argv.ToList();
        var sandbox = argv.IndexOf("-sandbox");
        Assert.True(sandbox >= 0 && argv[sandbox + 1].StartsWith("on,", StringComparison.Ordinal), $"QEMU runs without -sandbox on: {string.Join(' ', argv)}");
        var exports = argv.Zip(argv.Skip(1)).Where(p => p.First is "-fsdev" or "-virtfs").Select(p => p.Second).ToList();
        var export = Assert.Single(exports);
        Assert.Contains($",path={Path.Combine(pod, "shared")},", export + ",", StringComparison.Ordinal);

        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
        await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "STOPPED", Ctr.EventTimeout, () => $"{id} is not STOPPED");
        await c.CtrOkAsync(["tasks", "delete", id]);
        await c.CtrOkAsync(["containers", "delete", id]);
        await HostState.AssertNothingLeftAsync(c, id);
    });

    private static Task<ProcessResult> AsNobodyAsync(params string[] command) =>
        HostProcess.RunAsync(
            "setpriv",
            [$"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", "--", .. command],
            TimeSpan.FromSeconds(10));
}
