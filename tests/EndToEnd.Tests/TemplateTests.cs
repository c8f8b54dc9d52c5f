using System.Text.Json.Nodes;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 11, item 4: VM templates. With <c>useTemplate</c> the first pod of a config boots a template VM, saves it,
/// and is restored from it; the next pod is restored without booting. Each restored pod is its own VM: its share
/// works both ways, its clock is the host's, its random bytes are its own; delete leaves nothing of either pod.
/// Two pods (the template's boot, then two restores) for every assertion: the CI budget.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class TemplateTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    private const string Probe =
        "cat /vol/from-host; echo \"$POD\" > /vol/from-$POD; date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo";

    [VmFact]
    public Task Two_pods_restored_from_one_template_each_work_with_their_own_clock_randomness_and_share_and_leave_nothing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var config = await TemplateConfigAsync(c, s.NewId("tplcfg"));
        var volume = Directory.CreateDirectory(Path.Combine(c.Directory, $"{s.NewId("tplvol")}")).FullName;
        await File.WriteAllTextAsync(Path.Combine(volume, "from-host"), "host wrote this\n");
        var logStart = c.LogLength();
        try
        {
            var ids = new[] { s.NewId("tpla"), s.NewId("tplb") };
            var probes = new List<string[]>();
            foreach (var id in ids)
            {
                await c.CtrOkAsync(
                    Ctr.RunArgsWithConfig(config, id, ["-d", "--env", $"POD={id}", "--mount", $"type=bind,src={volume},dst=/vol,options=rbind:rw"], "sleep", "1000"),
                    Ctr.BootTimeout);
                var r = await c.CtrAsync(Ctr.ExecArgs(id, "probe", "sh", "-c", Probe), Ctr.CtrTimeout);
                Assert.True(r.ExitCode == 0, r.ToString());
                var host = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
                var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.True(lines.Length == 3, r.ToString());
                Assert.Equal("host wrote this", lines[0]);
                Assert.Equal(id + "\n", await File.ReadAllTextAsync(Path.Combine(volume, "from-" + id)));

                // The template's clock is minutes old by the time pods use it; the agent sets the host's.
                Assert.InRange(long.Parse(lines[1], System.Globalization.CultureInfo.InvariantCulture), host - 30, host + 30);
                Assert.Matches("^[0-9a-f]{32}$", lines[2]);
                probes.Add(lines);
            }

            // Same template, same saved RNG state: only the reseed at CreateSandbox makes these differ.
            Assert.NotEqual(probes[0][2], probes[1][2]);

            var log = c.LogSince(logStart, int.MaxValue);
            Assert.Single(log.Split('\n'), l => l.Contains("building VM template", StringComparison.Ordinal));
            foreach (var id in ids)
            {
                Assert.Contains($"vm {id}: restored from VM template", log, StringComparison.Ordinal);
                Assert.Contains($"sandbox {id}: phase restored at", log, StringComparison.Ordinal);
                Assert.DoesNotContain($"sandbox {id}: phase kernel-up", log, StringComparison.Ordinal);
                var qemu = Assert.Single(HostState.QemuProcesses(id));
                Assert.Contains(qemu.Argv, a => a.StartsWith("memory-backend-file,", StringComparison.Ordinal) && a.Contains(",share=off,", StringComparison.Ordinal));
            }

            foreach (var id in ids)
            {
                await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
                await Eventually.TrueAsync(async () => (await c.CtrAsync(["tasks", "delete", id])).ExitCode == 0, Ctr.EventTimeout, () => $"task {id} not deleted");
                await c.CtrOkAsync(["containers", "delete", id]);
                await HostState.AssertNothingLeftAsync(c, id, TimeSpan.FromSeconds(60));
            }
        }
        finally
        {
            RemoveTemplatesOf(config);
        }
    });

    /// <summary>The test's own config file (so its template is its own: the store keys templates by what shapes the
    /// VM, and replaces a config file's older templates).</summary>
    private static async Task<string> TemplateConfigAsync(PrivateContainerd c, string id)
    {
        var config = JsonNode.Parse(await File.ReadAllTextAsync(E2EEnvironment.RuntimeConfig))!;
        config["useTemplate"] = true;
        config["kernelParams"] = $"{config["kernelParams"]} csharp.e2e={id}";
        var path = Path.Combine(c.Directory, $"{id}.json");
        await File.WriteAllTextAsync(path, config.ToJsonString());
        return path;
    }

    private static void RemoveTemplatesOf(string configPath)
    {
        var store = Path.Combine(E2EEnvironment.SandboxRoot, ".templates");
        if (!Directory.Exists(store))
        {
            return;
        }

        foreach (var dir in Directory.EnumerateDirectories(store))
        {
            var source = Path.Combine(dir, "config-source");
            if (File.Exists(source) && File.ReadAllText(source) == configPath)
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }
}
