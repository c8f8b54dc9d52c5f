using Containerd.Runtime.Bootstrap.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Shim.Config;

namespace ShimV2.Shim.Tests;

public class RuntimeOptionsTests
{
    private static Any OptionsAny(string configPath, string typeUrl = "runtimeoptions.v1.Options") =>
        new() { TypeUrl = typeUrl, Value = new Containerd.RuntimeOptions.V1.Options { ConfigPath = configPath }.ToByteString() };

    [Theory]
    [InlineData("runtimeoptions.v1.Options")]
    [InlineData("types.containerd.io/runtimeoptions.v1.Options")]
    public void Create_options_name_the_config_path(string typeUrl)
    {
        Assert.Equal("/etc/x.json", RuntimeOptions.FromAny(OptionsAny("/etc/x.json", typeUrl)).ConfigPath);
    }

    [Fact]
    public void Missing_or_foreign_options_carry_no_config_path()
    {
        Assert.Null(RuntimeOptions.FromAny(null).ConfigPath);
        Assert.Null(RuntimeOptions.FromAny(OptionsAny("/etc/x.json", "containerd.runc.v1.Options")).ConfigPath);
        Assert.Null(RuntimeOptions.FromAny(OptionsAny(string.Empty)).ConfigPath);
    }

    [Fact]
    public void Start_stdin_may_be_a_bare_Any()
    {
        var options = RuntimeOptions.FromStartInput(OptionsAny("/a/qemu.json").ToByteArray());
        Assert.Equal("/a/qemu.json", options.ConfigPath);
    }

    [Fact]
    public void Start_stdin_may_be_bootstrap_params()
    {
        var bootstrap = new BootstrapParams
        {
            ContainerdTtrpcAddress = "/run/containerd/containerd.sock.ttrpc",
            Namespace = "k8s.io",
        };
        bootstrap.Extensions.Add(new Containerd.Runtime.Bootstrap.V1.Extension { Value = OptionsAny("/b/qemu.json") });
        var options = RuntimeOptions.FromStartInput(bootstrap.ToByteArray());
        Assert.Equal("/b/qemu.json", options.ConfigPath);
        Assert.Equal("/run/containerd/containerd.sock.ttrpc", options.TtrpcAddress);
        Assert.Equal("k8s.io", options.Namespace);
    }

    [Fact]
    public void Empty_stdin_means_no_options()
    {
        Assert.Same(RuntimeOptions.None, RuntimeOptions.FromStartInput([]));
    }

    [Fact]
    public void Garbage_on_stdin_is_a_clear_error()
    {
        var e = Assert.Throws<FormatException>(() => RuntimeOptions.FromStartInput([0xff, 0xff, 0xff]));
        Assert.StartsWith("cannot decode runtime options on stdin", e.Message, StringComparison.Ordinal);
    }
}
