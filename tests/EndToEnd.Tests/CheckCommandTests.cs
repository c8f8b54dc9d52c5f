using System.Text.RegularExpressions;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// `containerd-shim-csharp-v1 check` asks a real containerd its version over gRPC (the shim's own minimal HTTP/2
/// client, see src/containerd-shim-csharp-v1/Check/GrpcUnaryCall.cs): each containerd version under test answers it.
/// No VM boots.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CheckCommandTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    [Trait("containerd", "all")]
    [E2EFact]
    public async Task Check_names_the_version_of_the_containerd_it_asks()
    {
        var c = await fixture.GetAsync();

        var r = await HostProcess.RunAsync(
            E2EEnvironment.ShimBinary, ["check", "--config", E2EEnvironment.RuntimeConfig, "--containerd-address", c.Socket],
            TimeSpan.FromSeconds(60), log: output.WriteLine);

        var line = r.Stdout.Split('\n').SingleOrDefault(l => l.Contains(" containerd ", StringComparison.Ordinal));
        Assert.True(line is not null, r.ToString());
        Assert.Matches($@"^ok +containerd +v?{Regex.Escape(c.Version)}\S* \(revision [^)]*\) on {Regex.Escape(c.Socket)}$", line);
    }
}
