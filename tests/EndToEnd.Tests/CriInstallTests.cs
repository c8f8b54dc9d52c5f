using System.Globalization;
using System.Text.Json;
using ShimV2.Cri;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// The install a node operator does, for real: eng/install.sh --prefix into a fresh root, a CRI containerd whose
/// `csharp` handler is the README's stanza with ConfigPath pointing at the installed qemu.json and the installed
/// bin directory on its PATH, and a pod through it: the shim that runs is the installed binary, the VM boots the
/// installed kernel and initrd. One VM boot, one containerd of its own.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CriInstallTests(ITestOutputHelper output)
{
    [CriVmFact]
    [Trait("containerd", "2.1")]
    public async Task A_pod_runs_from_the_files_install_sh_put_under_a_prefix()
    {
        var root = Directory.CreateTempSubdirectory("csharp-install.").FullName;
        try
        {
            var install = await HostProcess.RunAsync("bash", [Path.Combine(E2EEnvironment.RepoRoot, "eng", "install.sh"), "--prefix", root],
                TimeSpan.FromMinutes(2), new ProcessOptions { Environment = new Dictionary<string, string> { ["ARTIFACTS"] = E2EEnvironment.Artifacts } },
                output.WriteLine);
            Assert.True(install.ExitCode == 0, $"install.sh failed: {install}");
            var shim = Path.Combine(root, "usr", "local", "bin", "containerd-shim-csharp-v1");
            var kernel = Path.Combine(root, "usr", "share", "csharp-shim", "vmlinux");
            var initrd = Path.Combine(root, "usr", "share", "csharp-shim", "initrd.img");
            var config = Path.Combine(root, "etc", "containerd-shim-csharp", "qemu.json");
            using (var json = JsonDocument.Parse(File.ReadAllText(config)))
            {
                Assert.Equal((kernel, initrd), (json.RootElement.GetProperty("kernelPath").GetString(), json.RootElement.GetProperty("initrdPath").GetString()));
            }

            // The README's stanza with ConfigPath = the installed config; containerd finds the shim on its PATH.
            var start = $"CRI_HANDLER_CONFIG={Quote(config)} CTRD_PATH_PREFIX={Quote(Path.GetDirectoryName(shim)!)} cri_start";
            var containerd = await ContainerdFixture.StartAsync(E2EEnvironment.CriLibrary, start, "k8s.io");
            try
            {
                Assert.Contains($"ConfigPath = \"{config}\"", File.ReadAllText(Path.Combine(containerd.Directory, "config.toml")), StringComparison.Ordinal);
                using var client = CriClient.ForUnixSocket(containerd.Socket);
                await Scenario.RunAsync(containerd, output, async s =>
                {
                    await using var pod = await CriPod.RunAsync(client, s, "cri-installed");
                    var app = await pod.StartContainerAsync("app", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done");
                    Assert.Equal("installed\n", await pod.ExecOkAsync(app, "echo", "installed"));
                    // The pod runs the kernel the installed image's manifest names (what `check` reports).
                    var release = File.ReadLines(Path.Combine(root, "usr", "share", "csharp-shim", "image.manifest"))
                        .Single(l => l.StartsWith("kernel: ", StringComparison.Ordinal))["kernel: ".Length..];
                    Assert.Equal(release + "\n", await pod.ExecOkAsync(app, "uname", "-r"));
                    Assert.NotEqual(File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim(),
                        (await pod.ExecOkAsync(app, "cat", "/proc/sys/kernel/random/boot_id")).Trim());

                    var shimProcess = Assert.Single(HostState.ShimProcesses(pod.Id));
                    Assert.Equal(shim, ExecutableOf(shimProcess.Pid));
                    var qemu = Assert.Single(HostState.QemuProcesses(pod.Id));
                    Assert.Contains(kernel, qemu.Argv);
                    Assert.Contains(initrd, qemu.Argv);

                    await pod.StopAndRemoveAsync();
                    await HostState.AssertNothingLeftAsync(containerd, app);
                    await HostState.AssertNothingLeftAsync(containerd, pod.Id);
                });
            }
            finally
            {
                await ContainerdFixture.StopAsync(containerd, "cri-installed");
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static string ExecutableOf(int pid) =>
        new FileInfo($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/exe").LinkTarget ?? "";

    private static string Quote(string value) => "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
