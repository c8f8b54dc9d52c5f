using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ShimV2.Shim.Tests;

/// <summary>
/// The shim executable's operator commands, run for real on this host: `check` (one line per item, exit 1 when a pod
/// could not start) and `env` (the resolved config as JSON). Nothing here boots a VM.
/// </summary>
public sealed class CheckAndEnvCommandTests : IDisposable
{
    private static readonly string Binary = ShimBinary.Path;

    private static readonly string[] Items =
        ["config", "qemu", "devices", "kernel", "initrd", "accelerator", "vhost-vsock", "tun", "cgroups", "shared-fs", "containerd"];

    private readonly string _dir = Directory.CreateTempSubdirectory("shim-check-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [BuiltConfigFact]
    public async Task Check_with_the_built_config_prints_every_item_and_exits_0()
    {
        var noContainerd = Path.Combine(_dir, "no-containerd.sock");

        var (code, stdout, stderr) = await RunAsync("check", "--config", BuiltConfigFactAttribute.Path, "--containerd-address", noContainerd);

        Assert.Equal((0, ""), (code, stderr));
        var lines = stdout.TrimEnd().Split('\n');
        Assert.Equal(Items, lines[..^1].Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]));
        Assert.All(lines[..^1], l => Assert.Matches("^(ok|warn) ", l));
        Assert.Equal("pods can start on this host with this config", lines[^1]);
        Assert.Matches(@"^ok   qemu         /usr/bin/qemu-system-x86_64: QEMU emulator version \d+\.\d+", lines[1]);
        Assert.Contains("virtio-serial-pci", lines[2], StringComparison.Ordinal);
        Assert.Matches(@"^ok   kernel       /\S+/vmlinux \(\d+\.\d MiB\): (custom|generic) kernel 6\.1\.\S+$", lines[3]);
        Assert.Matches(@"^(ok|warn) +accelerator +(tcg|kvm): \S", lines[5]);
        if (!File.Exists("/dev/kvm"))
        {
            Assert.Equal("warn accelerator  tcg: no /dev/kvm; using TCG (pods start, slower than under KVM)", lines[5]);
        }
        else if (KvmHost.IsPvmOnly)
        {
            Assert.StartsWith("warn accelerator  tcg: KVM is PVM-only (kvm_pvm)", lines[5], StringComparison.Ordinal);
        }

        Assert.Equal($"warn containerd   no containerd answers on {noContainerd}: the socket does not exist", lines[10]);
    }

    [BuiltConfigFact]
    public async Task Check_with_a_missing_kernel_names_the_path_and_exits_1()
    {
        var config = WriteConfig(c => c["kernelPath"] = "/nonexistent/vmlinuz");

        var (code, stdout, stderr) = await RunAsync("check", "--config", config, "--containerd-address", Path.Combine(_dir, "none.sock"));

        Assert.Equal((1, ""), (code, stderr));
        Assert.Contains("fail kernel       kernel not found: /nonexistent/vmlinuz\n", stdout, StringComparison.Ordinal);
        Assert.EndsWith("a pod could not start on this host with this config\n", stdout, StringComparison.Ordinal);
        Assert.Single(stdout.Split('\n'), l => l.StartsWith("fail", StringComparison.Ordinal));
    }

    [BuiltConfigFact]
    public async Task Check_names_the_kernel_the_guest_image_manifest_beside_it_says()
    {
        var kernel = Path.Combine(_dir, "vmlinux");
        await File.WriteAllBytesAsync(kernel, new byte[3 * 1048576 / 2]);
        await File.WriteAllTextAsync(Path.Combine(_dir, "image.manifest"), "# csharp guest image\ninput-hash: 00\nkernel: 6.1.192-csharp\nguest-kernel: custom\n");
        var config = WriteConfig(c => c["kernelPath"] = kernel);

        var (code, stdout, stderr) = await RunAsync("check", "--config", config, "--containerd-address", Path.Combine(_dir, "none.sock"));

        Assert.Equal((0, ""), (code, stderr));
        Assert.Contains($"\nok   kernel       {kernel} (1.5 MiB): custom kernel 6.1.192-csharp\n", stdout, StringComparison.Ordinal);
    }

    [BuiltConfigFact]
    public async Task Check_with_virtio_fs_finds_virtiofsd_and_the_vhost_user_fs_device()
    {
        var config = WriteConfig(c => c["sharedFs"] = "virtio-fs");

        var (code, stdout, stderr) = await RunAsync("check", "--config", config, "--containerd-address", Path.Combine(_dir, "none.sock"));

        Assert.Equal((0, ""), (code, stderr));
        Assert.Matches(@"\nok   devices      .*vhost-user-fs-pci", stdout);
        Assert.Matches(@"\nok   shared-fs    virtio-fs \(in use\): available \(virtiofsd /usr/\S+/virtiofsd, (Qemu|Rust) flavor\)", stdout);
    }

    [BuiltConfigFact]
    public async Task Check_with_virtio_fs_and_no_virtiofsd_fails_the_shared_fs_line()
    {
        var missing = Path.Combine(_dir, "virtiofsd");
        var config = WriteConfig(c =>
        {
            c["sharedFs"] = "virtio-fs";
            c["virtiofsdPath"] = missing;
        });

        var (code, stdout, stderr) = await RunAsync("check", "--config", config, "--containerd-address", Path.Combine(_dir, "none.sock"));

        Assert.Equal((1, ""), (code, stderr));
        Assert.Contains(
            $"\nfail shared-fs    sharedFs is virtio-fs but virtiofsd was not found (looked for {missing}; ",
            stdout,
            StringComparison.Ordinal);
        Assert.Single(stdout.Split('\n'), l => l.StartsWith("fail", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Check_with_a_broken_config_says_so_in_one_line_and_still_checks_the_host()
    {
        var config = Path.Combine(_dir, "broken.json");
        await File.WriteAllTextAsync(config, "{ \"memoryMiB\": \"lots\" }");

        var (code, stdout, stderr) = await RunAsync("check", "--config", config, "--containerd-address", Path.Combine(_dir, "none.sock"));

        Assert.Equal((1, ""), (code, stderr));
        Assert.StartsWith($"fail config       invalid hypervisor config {config}: line 1, column 22 ($.memoryMiB): memoryMiB must be a whole number\n", stdout, StringComparison.Ordinal);
        Assert.Matches(@"\n(ok|warn) +tun ", stdout);
        Assert.DoesNotContain("   at ", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Check_reports_the_version_of_a_containerd_that_answers()
    {
        if (!File.Exists("/usr/bin/containerd"))
        {
            Assert.Fail("/usr/bin/containerd is not installed (apt-get install containerd)");
        }

        await using var containerd = await PrivateContainerd.StartAsync(_dir);
        var (_, stdout, stderr) = await RunAsync("check", "--config", Path.Combine(_dir, "missing.json"), "--containerd-address", containerd.Socket);

        Assert.Equal("", stderr);
        Assert.Matches($@"\nok   containerd   {containerd.Version.Replace(".", "\\.", StringComparison.Ordinal)} \(revision \S+\) on {containerd.Socket}\n", stdout);
    }

    [Fact]
    public async Task Check_says_why_when_what_listens_on_the_socket_is_not_containerd()
    {
        var socketPath = Path.Combine(_dir, "not-containerd.sock");
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(socketPath));
        listener.Listen();
        // An HTTP/1.1 server: it answers anything with a 400 and reads until the client goes.
        var http1 = Task.Run(async () =>
        {
            using var peer = await listener.AcceptAsync();
            await peer.SendAsync("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"u8.ToArray());
            try
            {
                while (await peer.ReceiveAsync(new byte[4096]) > 0)
                {
                }
            }
            catch (System.Net.Sockets.SocketException)
            {
                // The client resets the connection: it leaves the rest of the 400 unread.
            }
        });

        var (_, stdout, stderr) = await RunAsync("check", "--config", Path.Combine(_dir, "missing.json"), "--containerd-address", socketPath);

        await http1;
        Assert.Equal("", stderr);
        Assert.Contains($"\nwarn containerd   no containerd answers on {socketPath}: the peer sent a 4740180-byte HTTP/2 frame: not a gRPC server?\n", stdout, StringComparison.Ordinal);
    }

    [BuiltConfigFact]
    public async Task Env_prints_the_effective_config_with_auto_resolved()
    {
        var (code, stdout, stderr) = await RunAsync("env", "--config", BuiltConfigFactAttribute.Path);

        Assert.Equal((0, ""), (code, stderr));
        var env = JsonNode.Parse(stdout)!;
        Assert.Equal(BuiltConfigFactAttribute.Path, (string?)env["configPath"]);
        Assert.Equal(10, (int)env["config"]!["kvmProbeSeconds"]!);
        Assert.Equal("auto", (string?)env["accelerator"]!["configured"]);
        Assert.Contains((string?)env["accelerator"]!["resolved"], new[] { "tcg", "kvm" });
        Assert.False(string.IsNullOrWhiteSpace((string?)env["accelerator"]!["reason"]));
        if (!File.Exists("/dev/kvm"))
        {
            Assert.Equal("tcg", (string?)env["accelerator"]!["resolved"]);
            Assert.Equal("no /dev/kvm; using TCG", (string?)env["accelerator"]!["reason"]);
        }

        Assert.Contains((string?)env["agentTransport"]!["resolved"], new[] { "vsock", "virtio-serial" });
        Assert.Equal((string?)env["config"]!["kernelPath"], (string?)env["paths"]!["kernel"]);
    }

    [Fact]
    public async Task Env_with_a_missing_config_is_one_line_on_stderr()
    {
        var missing = Path.Combine(_dir, "missing.json");

        var (code, stdout, stderr) = await RunAsync("env", "--config", missing);

        Assert.Equal((1, ""), (code, stdout));
        Assert.Equal($"containerd-shim-csharp-v1 env: hypervisor config not found: {missing}\n", stderr);
    }

    private string WriteConfig(Action<JsonObject> change)
    {
        var json = JsonNode.Parse(File.ReadAllText(BuiltConfigFactAttribute.Path))!.AsObject();
        change(json);
        var path = Path.Combine(_dir, "qemu.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    private async Task<(int Code, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        Assert.True(File.Exists(Binary), $"shim binary not built at {Binary}");
        var info = new ProcessStartInfo(Binary)
        {
            WorkingDirectory = _dir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment.Remove("CSHARP_SHIM_CONFIG_PATH");
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>A test that needs the config eng/build.sh writes (artifacts/config/qemu.json, or $ARTIFACTS/config):
    /// skipped, saying so, before the first build.</summary>
    private sealed class BuiltConfigFactAttribute : FactAttribute
    {
        public static readonly string Path = System.IO.Path.GetFullPath(System.IO.Path.Combine(
            Environment.GetEnvironmentVariable("ARTIFACTS") is { Length: > 0 } a ? a : System.IO.Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "artifacts"),
            "config",
            "qemu.json"));

        public BuiltConfigFactAttribute()
        {
            if (!File.Exists(Path))
            {
                Skip = $"{Path} is not built (run eng/build.sh)";
            }
        }
    }

    /// <summary>A containerd of our own (no CRI), on a socket in the test's directory, stopped on dispose.</summary>
    private sealed class PrivateContainerd : IAsyncDisposable
    {
        private readonly Process _process;

        private PrivateContainerd(Process process, string socket, string version)
        {
            _process = process;
            Socket = socket;
            Version = version;
        }

        public string Socket { get; }

        /// <summary>What `containerd --version` says (its third field), e.g. 1.6.20~ds1.</summary>
        public string Version { get; }

        public static async Task<PrivateContainerd> StartAsync(string dir)
        {
            var root = Path.Combine(dir, "containerd");
            var socket = Path.Combine(root, "c.sock");
            Directory.CreateDirectory(root);
            var config = Path.Combine(root, "config.toml");
            await File.WriteAllTextAsync(config, $"""
                version = 2
                root = "{root}/root"
                state = "{root}/state"
                disabled_plugins = ["io.containerd.grpc.v1.cri"]
                [grpc]
                  address = "{socket}"
                [ttrpc]
                  address = "{socket}.ttrpc"
                """);
            var version = (await Output("/usr/bin/containerd", "--version")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[2];
            var info = new ProcessStartInfo("/usr/bin/containerd") { RedirectStandardError = true, RedirectStandardOutput = true };
            info.ArgumentList.Add("--config");
            info.ArgumentList.Add(config);
            var process = Process.Start(info)!;
            _ = process.StandardError.ReadToEndAsync();
            _ = process.StandardOutput.ReadToEndAsync();
            var started = new PrivateContainerd(process, socket, version);

            // containerd gives no readiness signal but its socket: poll for it, with a deadline.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!File.Exists(socket))
            {
                if (process.HasExited || DateTime.UtcNow > deadline)
                {
                    await started.DisposeAsync();
                    Assert.Fail($"containerd did not create {socket} within 30 s (exited: {process.HasExited})");
                }

                await Task.Delay(50);
            }

            return started;
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            await _process.WaitForExitAsync();
            _process.Dispose();
        }

        private static async Task<string> Output(string file, string arg)
        {
            using var p = Process.Start(new ProcessStartInfo(file, arg) { RedirectStandardOutput = true })!;
            var text = await p.StandardOutput.ReadToEndAsync();
            await p.WaitForExitAsync();
            return text;
        }
    }
}
