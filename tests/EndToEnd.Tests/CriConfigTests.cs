using System.Text.RegularExpressions;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// The README's CRI runtime stanza for the containerd version under test (config version 2 for 1.x, 3 for 2.x)
/// is what that containerd really loads: a containerd of that version started with the stanza and CRI enabled
/// reports its CRI plugins "ok", and its `config dump` shows the csharp runtime with our runtime_type and the
/// ConfigPath option. (No pod is run: that needs a CRI client.)
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed partial class CriConfigTests(ITestOutputHelper output)
{
    [E2EFact]
    [Trait("containerd", "all")]
    public async Task The_readme_cri_stanza_loads_with_cri_enabled()
    {
        var plugin = E2EEnvironment.IsContainerd2 ? "io.containerd.cri.v1.runtime" : "io.containerd.grpc.v1.cri";
        var stanza = ReadmeStanza(plugin);
        output.WriteLine($"README stanza for containerd {E2EEnvironment.ContainerdSeries}:\n{stanza}");
        var stanzaFile = Path.Combine(Path.GetTempPath(), $"csharp-e2e-cri-{Environment.ProcessId}.toml");
        await File.WriteAllTextAsync(stanzaFile, stanza);
        const string script = """
            set -e
            source "$1"
            source "$2"
            if [[ "$E2E_CONTAINERD" != 1.6 ]]; then CTRD_BIN_DIR="$(containerd_bin_dir "$E2E_CONTAINERD")"; fi
            trap containerd_stop EXIT
            containerd_start
            echo "== version $CTRD_VERSION"
            echo "== plugins"
            ctrd plugins ls
            echo "== dump"
            "$(dirname "$CTRD_CTR")/containerd" --config "$CTRD_DIR/config.toml" config dump
            echo "== log"
            grep -i -e 'level=error' -e 'level=warn' "$CTRD_LOG" || true
            """;
        ProcessResult r;
        try
        {
            r = await HostProcess.RunAsync(
                "bash",
                ["-c", script, "bash", E2EEnvironment.ContainerdLibrary, E2EEnvironment.ContainerdVersionsLibrary],
                TimeSpan.FromMinutes(2),
                new ProcessOptions
                {
                    Environment = new Dictionary<string, string>
                    {
                        ["CTRD_DIR_TEMPLATE"] = "/tmp/csharp-e2e.XXXXXX",
                        ["CTRD_OWNER_PID"] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        ["CTRD_CRI_STANZA"] = stanzaFile,
                        ["ARTIFACTS"] = E2EEnvironment.Artifacts,
                        ["E2E_CONTAINERD"] = E2EEnvironment.ContainerdSeries,
                    },
                },
                output.WriteLine);
        }
        finally
        {
            File.Delete(stanzaFile);
        }

        Assert.True(r.ExitCode == 0, r.ToString());
        output.WriteLine(r.Stdout);
        var plugins = Section(r.Stdout, "plugins");
        var dump = Section(r.Stdout, "dump").Replace('\'', '"');
        string[] criPlugins = E2EEnvironment.IsContainerd2
            ? ["io.containerd.grpc.v1 +cri", "io.containerd.cri.v1 +runtime", "io.containerd.cri.v1 +images"]
            : ["io.containerd.grpc.v1 +cri"];
        foreach (var p in criPlugins)
        {
            Assert.Matches(new Regex($@"(?m)^{p} .* ok\s*$"), plugins);
        }

        var runtime = Regex.Match(dump, $@"(?ms)^\s*\[plugins\.""{Regex.Escape(plugin)}""\.containerd\.runtimes\.csharp\]\s*$(?<body>.*?)^\s*\[plugins\.""{Regex.Escape(plugin)}""\.containerd\.runtimes\.csharp\.options\]\s*$(?<options>.*?)(^\s*\[|\z)");
        Assert.True(runtime.Success, $"config dump has no csharp runtime under {plugin}:\n{dump}");
        Assert.Matches(@"(?m)^\s*runtime_type = ""io\.containerd\.csharp\.v1""\s*$", runtime.Groups["body"].Value);
        Assert.Matches(@"(?m)^\s*ConfigPath = ""/etc/containerd-shim-csharp/qemu\.json""\s*$", runtime.Groups["options"].Value);
    }

    /// <summary>The README's ```toml block that configures the csharp runtime under <paramref name="plugin"/>.</summary>
    private static string ReadmeStanza(string plugin)
    {
        var readme = File.ReadAllText(Path.Combine(E2EEnvironment.RepoRoot, "README.md"));
        var blocks = TomlBlock().Matches(readme).Select(m => m.Groups["toml"].Value)
            .Where(b => b.Contains($"[plugins.\"{plugin}\".containerd.runtimes.csharp]", StringComparison.Ordinal))
            .ToList();
        Assert.True(blocks.Count == 1, $"README.md should have one ```toml block for {plugin}, has {blocks.Count}");
        return blocks[0];
    }

    private static string Section(string text, string name)
    {
        var start = text.IndexOf($"== {name}\n", StringComparison.Ordinal);
        Assert.True(start >= 0, $"no '{name}' section in:\n{text}");
        start += name.Length + 4;
        var end = text.IndexOf("\n== ", start, StringComparison.Ordinal);
        return end < 0 ? text[start..] : text[start..end];
    }

    [GeneratedRegex(@"```toml\n(?<toml>.*?)```", RegexOptions.Singleline)]
    private static partial Regex TomlBlock();
}
