using System.Text;
using System.Text.Json;
using ShimV2.Shim.Bundle;
using ShimV2.Shim.Sandbox;

namespace ShimV2.Shim.Tests;

public sealed class BundleTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("shim-bundle-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_CRI_container_belongs_to_the_sandbox_its_annotation_names()
    {
        var spec = BundleSpec.Parse(
            """{"hostname":"web","annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.kubernetes.cri.container-type":"container"}}"""u8.ToArray(),
            "config.json");
        Assert.Equal("pod1", spec.SandboxId("c1"));
        Assert.False(spec.IsSandbox("c1"));
        Assert.Equal("web", spec.Hostname);
    }

    [Fact]
    public void A_ctr_container_is_its_own_sandbox()
    {
        var spec = BundleSpec.Parse("""{"process":{"terminal":true}}"""u8.ToArray(), "config.json");
        Assert.Equal("c1", spec.SandboxId("c1"));
        Assert.True(spec.IsSandbox("c1"));
        Assert.True(spec.Terminal);
        Assert.Null(spec.Hostname);
    }

    [Theory]
    [InlineData("""{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}""", "/var/run/netns/cni-1")]
    [InlineData("""{"linux":{"namespaces":[{"type":"network"}]}}""", null)]
    [InlineData("""{"linux":{"namespaces":[{"type":"network","path":""}]}}""", null)]
    [InlineData("""{"linux":{"namespaces":"odd"}}""", null)]
    [InlineData("""{}""", null)]
    public void The_pod_network_namespace_is_the_network_namespace_path(string json, string? expected) =>
        Assert.Equal(expected, BundleSpec.Parse(System.Text.Encoding.UTF8.GetBytes(json), "config.json").NetworkNamespace);

    [Theory]
    [InlineData("""{"annotations":{"io.kubernetes.cri.container-type":"sandbox"},"linux":{"namespaces":[{"type":"pid"}]}}""", true)]
    [InlineData("""{"annotations":{"io.kubernetes.cri.container-type":"sandbox"}}""", true)]
    [InlineData("""{"annotations":{"io.kubernetes.cri.container-type":"sandbox"},"linux":{"namespaces":[{"type":"network","path":"/var/run/netns/cni-1"}]}}""", false)]
    [InlineData("""{"annotations":{"io.kubernetes.cri.container-type":"sandbox"},"linux":{"namespaces":[{"type":"network"}]}}""", false)]
    [InlineData("""{"linux":{"namespaces":[{"type":"pid"}]}}""", false)] // ctr run --net-host: not a pod
    [InlineData("""{"annotations":{"io.kubernetes.cri.container-type":"container"},"linux":{"namespaces":[{"type":"pid"}]}}""", false)]
    public void Only_a_hostNetwork_pod_sandbox_is_refused(string json, bool refused)
    {
        var spec = BundleSpec.Parse(Encoding.UTF8.GetBytes(json), "config.json");
        Assert.Equal(refused, spec.RefusalReason != null);
        if (refused)
        {
            Assert.Contains("cannot share the host's network namespace", spec.RefusalReason, StringComparison.Ordinal);
            Assert.DoesNotContain("\n", spec.RefusalReason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_broken_config_json_is_a_clear_error_naming_the_file()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), "{\"process\": ");
        var e = Assert.Throws<BundleException>(() => BundleSpec.Load(_dir));
        Assert.StartsWith($"invalid OCI spec {_dir}/config.json:", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("\n", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_config_json_with_invalid_utf8_in_a_string_is_a_clear_error()
    {
        // Found by eng/fuzz.sh (oci-spec): JsonDocument checks a string's UTF-8 only when it is read.
        File.WriteAllBytes(Path.Combine(_dir, "config.json"), [.. "{\"hostname\": \"f"u8, 0x84, .. "zz\"}"u8]);
        var e = Assert.Throws<BundleException>(() => BundleSpec.Load(_dir));
        Assert.Equal($"invalid OCI spec {_dir}/config.json: not valid UTF-8", e.Message);
    }

    [Fact]
    public void A_missing_config_json_is_a_clear_error()
    {
        var e = Assert.Throws<BundleException>(() => BundleSpec.Load(Path.Combine(_dir, "nope")));
        Assert.StartsWith("cannot read ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bind_sources_are_rewritten_to_guest_paths_and_other_mounts_are_kept()
    {
        var data = Directory.CreateDirectory(Path.Combine(_dir, "data")).FullName;
        var hosts = Path.Combine(_dir, "hosts");
        File.WriteAllText(hosts, "127.0.0.1 localhost\n");
        var json = Encoding.UTF8.GetBytes($$"""
            {"ociVersion":"1.1.0","mounts":[
              {"destination":"/proc","type":"proc","source":"proc"},
              {"destination":"/data","type":"bind","source":"{{data}}","options":["rbind","ro"]},
              {"destination":"/etc/hosts","source":"{{hosts}}","options":["bind","rw"]}
            ]}
            """);

        var (rewritten, shared) = SharedMounts.Rewrite(json, SandboxPaths.GuestContainerDirectory("c1"));

        Assert.Equal(
            [
                new SharedMount(data, "mounts/1-data", IsDirectory: true, ReadOnly: true),
                new SharedMount(hosts, "mounts/2-hosts", IsDirectory: false, ReadOnly: false),
            ],
            shared);
        using var doc = JsonDocument.Parse(rewritten);
        var mounts = doc.RootElement.GetProperty("mounts");
        Assert.Equal("proc", mounts[0].GetProperty("source").GetString());
        Assert.Equal("/run/csharp/shared/c1/mounts/1-data", mounts[1].GetProperty("source").GetString());
        Assert.Equal("/run/csharp/shared/c1/mounts/2-hosts", mounts[2].GetProperty("source").GetString());
        Assert.Equal("/etc/hosts", mounts[2].GetProperty("destination").GetString());
        Assert.Equal("1.1.0", doc.RootElement.GetProperty("ociVersion").GetString());
    }

    [Fact]
    public void Volumes_with_shared_or_slave_propagation_are_one_guest_directory_per_pod_and_source()
    {
        var data = Directory.CreateDirectory(Path.Combine(_dir, "vol")).FullName;
        string Spec(string propagation) => $$"""
            {"mounts":[{"destination":"/v","type":"bind","source":"{{data}}","options":["rbind","{{propagation}}"]},
                       {"destination":"/p","type":"bind","source":"{{data}}","options":["rbind","rprivate"]}]}
            """;

        var (first, sharedFirst) = SharedMounts.Rewrite(Encoding.UTF8.GetBytes(Spec("rshared")), SandboxPaths.GuestContainerDirectory("c1"));
        var (second, sharedSecond) = SharedMounts.Rewrite(Encoding.UTF8.GetBytes(Spec("rslave")), SandboxPaths.GuestContainerDirectory("c2"));

        string Source(byte[] json, int i) => JsonDocument.Parse(json).RootElement.GetProperty("mounts")[i].GetProperty("source").GetString()!;
        Assert.Equal(Source(first, 0), Source(second, 0));
        Assert.Matches("^/run/csharp/shared/volumes/[0-9a-f]{16}-vol$", Source(first, 0));
        Assert.Equal("../" + Source(first, 0)["/run/csharp/shared/".Length..], sharedFirst[0].ShareRelativePath);
        Assert.Equal(sharedFirst[0], sharedSecond[0]);
        Assert.Equal("/run/csharp/shared/c1/mounts/1-vol", Source(first, 1));
    }

    [Fact]
    public void A_spec_without_binds_is_passed_through_unchanged()
    {
        var json = """{"mounts":[{"destination":"/tmp","type":"tmpfs","source":"tmpfs"}]}"""u8.ToArray();
        var (rewritten, shared) = SharedMounts.Rewrite(json, "/g");
        Assert.Same(json, rewritten);
        Assert.Empty(shared);
    }

    [Theory]
    [InlineData("relative/path", "is not an absolute path")]
    [InlineData("/nonexistent/csharp-shim-test", "does not exist")]
    public void A_bad_bind_source_is_refused_with_its_path(string source, string reason)
    {
        var json = Encoding.UTF8.GetBytes($$"""{"mounts":[{"destination":"/x","type":"bind","source":"{{source}}"}]}""");
        var e = Assert.Throws<BundleException>(() => SharedMounts.Rewrite(json, "/g"));
        Assert.Contains(source, e.Message, StringComparison.Ordinal);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { "ro", "nosuid", "nodev" }, 1UL | 2 | 4, null)]
    [InlineData(new[] { "rw", "lowerdir=/a", "upperdir=/b" }, 0UL, "lowerdir=/a,upperdir=/b")]
    [InlineData(new[] { "ro", "rw" }, 0UL, null)]
    [InlineData(new[] { "rbind" }, 4096UL | 16384, null)]
    public void Mount_options_split_into_flags_and_data(string[] options, ulong flags, string? data)
    {
        Assert.Equal((flags, data), MountOptions.Parse(options));
    }
}
