using System.Text;
using Containerd.Task.V2;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Shim.Sandbox;

namespace ShimV2.Shim.Tests;

public sealed class SandboxSizeTests : IAsyncDisposable
{
    private readonly TaskServiceHarness _h = new();

    public ValueTask DisposeAsync() => _h.DisposeAsync();

    [Theory]
    [InlineData("{}", 0, 0)]
    [InlineData("""{"cpu":{"quota":50000,"period":100000}}""", 1, 0)]
    [InlineData("""{"cpu":{"quota":250000,"period":100000}}""", 3, 0)]
    [InlineData("""{"cpu":{"quota":-1,"period":100000}}""", 0, 0)]
    [InlineData("""{"cpu":{"shares":1024}}""", 0, 0)]
    [InlineData("""{"memory":{"limit":268435456}}""", 0, 256)]
    [InlineData("""{"memory":{"limit":1}}""", 0, 1)]
    [InlineData("""{"memory":{"limit":-1}}""", 0, 0)]
    [InlineData("""{"cpu":{"quota":100000,"period":100000},"memory":{"limit":134217728},"pids":{"limit":10}}""", 1, 128)]
    public void A_containers_limits_become_what_it_adds_to_the_VM(string resources, int vcpus, int memoryMiB)
    {
        Assert.Equal(new SandboxSize(vcpus, memoryMiB), SandboxSize.FromResources(Encoding.UTF8.GetBytes(resources)));
    }

    [Fact]
    public void Broken_resources_JSON_is_a_format_error()
    {
        Assert.Throws<FormatException>(() => SandboxSize.FromResources("{\"memory\":"u8));
    }

    [Fact]
    public async Task The_VM_grows_by_each_containers_limits_and_by_an_update()
    {
        await _h.CreateAsync("c1", """{"linux":{"resources":{"cpu":{"quota":200000,"period":100000},"memory":{"limit":268435456}}}}""");
        var sandbox = _h.Launcher.Launched[0];
        Assert.Equal([new SandboxSize(3, 768)], sandbox.Grows);

        var update = """{"memory":{"limit":536870912}}""";
        await _h.Service.UpdateAsync(
            new UpdateTaskRequest { Id = "c1", Resources = new Any { TypeUrl = "x", Value = ByteString.CopyFromUtf8(update) } },
            CancellationToken.None);
        Assert.Equal(new SandboxSize(3, 1024), sandbox.Grows[^1]);
        Assert.Contains($"update c1 {update}", _h.Agent.Calls);
    }

    [Fact]
    public async Task A_container_without_limits_does_not_resize_the_VM()
    {
        await _h.CreateAsync("c1");
        Assert.Empty(_h.Launcher.Launched[0].Grows);
    }
}
