using ShimV2.Fuzz;
using Xunit;

namespace ShimV2.Fuzz.Tests;

/// <summary>
/// Every seed and every input the fuzzer once found failing, run through its target as eng/fuzz.sh runs it: a
/// target throws only on a bug (an unexpected exception type), so each must pass.
/// </summary>
public sealed class CorpusReplayTests
{
    public static TheoryData<string, string> Inputs()
    {
        var data = new TheoryData<string, string>();
        foreach (var kind in new[] { "corpus", "regressions" })
        {
            var root = Path.Combine(AppContext.BaseDirectory, kind);
            if (!Directory.Exists(root))
            {
                continue;
            }

            foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                var target = Path.GetFileName(Path.GetDirectoryName(file)!);
                data.Add(target, Path.GetRelativePath(AppContext.BaseDirectory, file));
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Input_is_handled_without_an_unexpected_exception(string target, string file)
    {
        Assert.True(FuzzTargets.All.TryGetValue(target, out var run), $"{file}: no fuzz target named {target}");
        run(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, file)));
    }

    [Fact]
    public void Every_target_has_a_seed_corpus()
    {
        foreach (var target in FuzzTargets.All.Keys)
        {
            var corpus = Path.Combine(AppContext.BaseDirectory, "corpus", target);
            Assert.True(Directory.Exists(corpus) && Directory.EnumerateFiles(corpus).Any(), $"no seeds for {target}");
        }
    }
}
