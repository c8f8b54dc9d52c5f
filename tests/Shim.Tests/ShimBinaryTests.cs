using System.Diagnostics;
using Containerd.Task.V2;
using Google.Protobuf;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Tests;

/// <summary>
/// The real shim executable, run as containerd runs it (`start`, the daemon, `delete`), without containerd:
/// its socket dir is private (CSHARP_SHIM_SOCKET_DIR) and nothing here boots a VM.
/// </summary>
public sealed class ShimBinaryTests : IDisposable
{
    private static readonly string Binary = ShimBinary.Path;

    private readonly string _dir = Directory.CreateTempSubdirectory("shim-bin-").FullName;
    private readonly List<int> _daemons = [];

    public void Dispose()
    {
        foreach (var pid in _daemons)
        {
            try
            {
                using var p = Process.GetProcessById(pid);
                p.Kill();
                p.WaitForExit(5000);
            }
            catch (ArgumentException)
            {
                // Already gone, as it should be.
            }
        }

        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Start_prints_only_the_address_writes_it_without_newline_and_the_daemon_serves_it()
    {
        var bundle = Bundle("c1", """{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}""");
        var (code, stdout, stderr) = await RunAsync(bundle, "-namespace", "default", "-address", $"{_dir}/containerd.sock", "-publish-binary", "containerd", "-id", "c1", "start");

        Assert.Equal((0, string.Empty), (code, stderr));
        Assert.Matches($"^unix://{_dir}/s/[0-9a-f]{{64}}$", stdout);
        Assert.Equal(stdout, await File.ReadAllTextAsync(Path.Combine(bundle, "address")));

        var socket = stdout["unix://".Length..];
        await using var client = await TtrpcClient.ConnectUnixAsync(socket);
        var connect = await client.CallAsync<ConnectRequest, ConnectResponse>(
            "containerd.task.v2.Task", "Connect", new ConnectRequest { Id = "c1" }, new TtrpcCallOptions { Timeout = TimeSpan.FromSeconds(10) });
        Assert.NotEqual(0u, connect.ShimPid);
        Assert.Equal(0u, connect.TaskPid);
        _daemons.Add((int)connect.ShimPid);

        // A second container of the same pod reuses the running shim.
        var bundle2 = Bundle("c2", """{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}""");
        var again = await RunAsync(bundle2, "-namespace", "default", "-address", $"{_dir}/containerd.sock", "-id", "c2", "start");
        Assert.Equal((0, stdout), (again.Code, again.Stdout));

        // An unknown task is NotFound over the wire, and Shutdown with nothing left ends the daemon and its socket.
        var e = await Assert.ThrowsAsync<TtrpcException>(() => client.CallAsync<StateRequest, StateResponse>(
            "containerd.task.v2.Task", "State", new StateRequest { Id = "nope" }));
        Assert.Equal(TtrpcStatusCode.NotFound, e.Code);
        await client.CallAsync<ShutdownRequest, Google.Protobuf.WellKnownTypes.Empty>(
            "containerd.task.v2.Task", "Shutdown", new ShutdownRequest { Id = "c1" });
        using var daemon = Process.GetProcessById((int)connect.ShimPid);
        Assert.True(daemon.WaitForExit(10_000), "the daemon must exit after Shutdown when it holds no container");
        Assert.False(File.Exists(socket), "the daemon removes its socket");
    }

    /// <summary>containerd 2.3+ writes BootstrapParams (not a bare Any) to start's stdin: the namespace, containerd's
    /// TTRPC address and the runtime options (an extension) in it win over the flags and the environment.</summary>
    [Fact]
    public async Task Start_takes_containerd_2_3_bootstrap_params_on_stdin()
    {
        var bundle = Bundle("c1", "{}");
        var bootstrap = new Containerd.Runtime.Bootstrap.V1.BootstrapParams
        {
            InstanceId = "c1",
            Namespace = "k8s.io",
            ContainerdVersion = "2.3.0",
            ContainerdTtrpcAddress = $"{_dir}/other.sock.ttrpc",
            ContainerdGrpcAddress = $"{_dir}/containerd.sock",
        };
        bootstrap.Extensions.Add(new Containerd.Runtime.Bootstrap.V1.Extension
        {
            Value = new Google.Protobuf.WellKnownTypes.Any
            {
                TypeUrl = "runtimeoptions.v1.Options",
                Value = new Containerd.RuntimeOptions.V1.Options { ConfigPath = "/etc/from-bootstrap.json" }.ToByteString(),
            },
        });

        var (code, stdout, stderr) = await RunAsync(bundle, bootstrap.ToByteArray(),
            "-namespace", "default", "-address", $"{_dir}/containerd.sock", "-id", "c1", "start");

        Assert.Equal((0, string.Empty), (code, stderr));
        // The socket is named for the bootstrap's namespace: sha256("<address>/k8s.io/c1").
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes($"{_dir}/containerd.sock/k8s.io/c1")));
        Assert.Equal($"unix://{_dir}/s/{hash}", stdout);
        await using var client = await TtrpcClient.ConnectUnixAsync(stdout["unix://".Length..]);
        var connect = await client.CallAsync<ConnectRequest, ConnectResponse>(
            "containerd.task.v2.Task", "Connect", new ConnectRequest { Id = "c1" }, new TtrpcCallOptions { Timeout = TimeSpan.FromSeconds(10) });
        _daemons.Add((int)connect.ShimPid);
        var environment = (await File.ReadAllTextAsync($"/proc/{connect.ShimPid}/environ")).Split('\0');
        Assert.Contains($"TTRPC_ADDRESS={_dir}/other.sock.ttrpc", environment);
        Assert.Contains("CSHARP_SHIM_CONFIG_PATH=/etc/from-bootstrap.json", environment);
        var argv = (await File.ReadAllTextAsync($"/proc/{connect.ShimPid}/cmdline")).Split('\0');
        Assert.Equal("k8s.io", argv[Array.IndexOf(argv, "-namespace") + 1]);
    }

    [Fact]
    public async Task Start_with_a_broken_config_json_fails_with_one_line()
    {
        var bundle = Bundle("c1", "{\"process\":");
        var (code, stdout, stderr) = await RunAsync(bundle, "-namespace", "default", "-address", $"{_dir}/containerd.sock", "-id", "c1", "start");
        Assert.Equal(1, code);
        Assert.Empty(stdout);
        Assert.StartsWith("containerd-shim-csharp-v1 start: invalid OCI spec", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.TrimEnd().Split('\n'));
        Assert.False(Directory.Exists($"{_dir}/s") && Directory.EnumerateFileSystemEntries($"{_dir}/s").Any(), "no socket is left");
    }

    [Fact]
    public async Task Delete_answers_a_DeleteResponse_even_without_any_state()
    {
        var bundle = Bundle("gone", "{}");
        var (code, stdout, _) = await RunAsync(bundle, "-namespace=default", "-address", $"{_dir}/containerd.sock", "-id", "gone", "-bundle", bundle, "delete");
        Assert.Equal(0, code);
        var response = DeleteResponse.Parser.ParseFrom(System.Text.Encoding.Latin1.GetBytes(stdout));
        Assert.Equal(137u, response.ExitStatus);
        Assert.NotNull(response.ExitedAt);
        Assert.True(File.Exists(Path.Combine(bundle, "config.json")), "delete never removes the bundle");
    }

    [Fact]
    public async Task Version_flag_prints_the_version()
    {
        var (code, stdout, _) = await RunAsync(_dir, "-v");
        Assert.Equal(0, code);
        Assert.StartsWith("containerd-shim-csharp-v1 ", stdout, StringComparison.Ordinal);
    }

    private string Bundle(string id, string config)
    {
        var bundle = Directory.CreateDirectory(Path.Combine(_dir, "bundles", id)).FullName;
        File.WriteAllText(Path.Combine(bundle, "config.json"), config);
        return bundle;
    }

    private Task<(int Code, string Stdout, string Stderr)> RunAsync(string cwd, params string[] args) => RunAsync(cwd, [], args);

    private async Task<(int Code, string Stdout, string Stderr)> RunAsync(string cwd, byte[] stdin, params string[] args)
    {
        Assert.True(File.Exists(Binary), $"shim binary not built at {Binary}");
        var info = new ProcessStartInfo(Binary)
        {
            WorkingDirectory = cwd,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = System.Text.Encoding.Latin1,
        };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["CSHARP_SHIM_SOCKET_DIR"] = Path.Combine(_dir, "s");
        info.Environment["CSHARP_SHIM_STATE_ROOT"] = Path.Combine(_dir, "state");
        info.Environment["TTRPC_ADDRESS"] = Path.Combine(_dir, "containerd.sock.ttrpc");
        using var process = Process.Start(info)!;
        await process.StandardInput.BaseStream.WriteAsync(stdin);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}
