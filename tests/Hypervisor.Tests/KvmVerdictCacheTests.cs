using System.Text.Json;

namespace ShimV2.Hypervisor.Tests;

/// <summary>The verdict file under /run: per host boot, kernel and QEMU; atomic; corrupt files ignored.</summary>
public sealed class KvmVerdictCacheTests : IDisposable
{
    private readonly TestDirectory dir = new("verdict");

    public void Dispose() => dir.Dispose();

    [Fact]
    public void A_written_verdict_is_read_back_for_the_same_boot_kernel_and_qemu()
    {
        var (cache, config) = Setup("boot-1");
        var key = cache.KeyFor(config)!;

        Assert.Null(cache.Read(key));
        Assert.Null(cache.Write(key, new KvmVerdict(true, "KVM (kvm_intel) runs this guest kernel")));

        Assert.Equal(new KvmVerdict(true, "KVM (kvm_intel) runs this guest kernel"), cache.Read(cache.KeyFor(config)!));
        var file = JsonDocument.Parse(File.ReadAllText(cache.PathFor(key))).RootElement;
        Assert.Equal("boot-1", file.GetProperty("bootId").GetString());
        Assert.StartsWith(config.KernelPath + "|", file.GetProperty("kernel").GetString(), StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(cache.Directory, "*.tmp"));
    }

    [Fact]
    public void Another_host_boot_does_not_see_the_verdict()
    {
        var (cache, config) = Setup("boot-1");
        Assert.Null(cache.Write(cache.KeyFor(config)!, new KvmVerdict(false, "no life")));

        File.WriteAllText(dir.Combine("boot_id"), "boot-2\n");

        Assert.Null(cache.Read(cache.KeyFor(config)!));
    }

    [Fact]
    public void A_replaced_kernel_does_not_see_the_verdict()
    {
        var (cache, config) = Setup("boot-1");
        Assert.Null(cache.Write(cache.KeyFor(config)!, new KvmVerdict(false, "no life")));

        File.WriteAllText(config.KernelPath, "another kernel, of another size\n");

        Assert.Null(cache.Read(cache.KeyFor(config)!));
    }

    [Theory]
    [InlineData("")]
    [InlineData("{not json")]
    [InlineData("null")]
    [InlineData("""{"version": 1, "bootId": "someone else", "kernel": "k", "qemu": "q", "kvmWorks": true, "reason": "r", "recorded": "2026-01-01T00:00:00Z"}""")]
    [InlineData("""{"version": 1, "kvmWorks": true}""")]
    public void A_corrupt_or_foreign_file_is_ignored_and_then_replaced(string content)
    {
        var (cache, config) = Setup("boot-1");
        var key = cache.KeyFor(config)!;
        Directory.CreateDirectory(cache.Directory);
        File.WriteAllText(cache.PathFor(key), content);

        Assert.Null(cache.Read(key));
        Assert.Null(cache.Write(key, new KvmVerdict(false, "no life")));
        Assert.Equal(new KvmVerdict(false, "no life"), cache.Read(key));
    }

    [Fact]
    public void Without_a_boot_id_nothing_is_cached()
    {
        var config = AcceleratorDecisionTests.Config(dir);
        var cache = new KvmVerdictCache(dir.Combine("verdicts"), dir.Combine("no-boot-id"));

        Assert.Null(cache.KeyFor(config));
    }

    [Fact]
    public void A_directory_that_cannot_be_created_is_reported_not_thrown()
    {
        var (_, config) = Setup("boot-1");
        var blocker = dir.File("blocker", "a file where the directory should be\n");
        var cache = new KvmVerdictCache(Path.Combine(blocker, "accel"), dir.Combine("boot_id"));

        var error = cache.Write(cache.KeyFor(config)!, new KvmVerdict(true, "works"));

        Assert.NotNull(error);
        Assert.StartsWith($"cannot record the KVM verdict in {blocker}/accel/", error, StringComparison.Ordinal);
    }

    private (KvmVerdictCache Cache, HypervisorConfig Config) Setup(string bootId)
    {
        var config = AcceleratorDecisionTests.Config(dir);
        return (new KvmVerdictCache(dir.Combine("verdicts"), dir.File("boot_id", bootId + "\n")), config);
    }
}
