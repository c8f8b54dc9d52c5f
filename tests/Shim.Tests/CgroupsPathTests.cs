using ShimV2.Shim.Cgroups;

namespace ShimV2.Shim.Tests;

/// <summary>linux.cgroupsPath as CRI and ctr write it, read as runc reads it.</summary>
public sealed class CgroupsPathTests
{
    [Theory]
    [InlineData("/kubepods/besteffort/pod0f1e/abc123", "/kubepods/besteffort/pod0f1e/abc123")]
    [InlineData("/default/demo", "/default/demo")]
    [InlineData("//kubepods//burstable/podX/", "/kubepods/burstable/podX")]
    [InlineData("relative/child", "relative/child")]
    public void A_cgroupfs_path_is_cleaned_and_kept(string raw, string path)
    {
        var parsed = CgroupsPath.Parse(raw);
        Assert.Equal((CgroupDriver.Cgroupfs, path, raw.StartsWith('/')), (parsed.Driver, parsed.Path, parsed.IsAbsolute));
        Assert.Null(parsed.Unit);
    }

    [Fact]
    public void The_systemd_form_names_a_scope_in_its_slice_and_where_systemd_puts_it()
    {
        var parsed = CgroupsPath.Parse("kubepods-besteffort-pod0f1e.slice:cri-containerd:abc123");
        Assert.Equal(CgroupDriver.Systemd, parsed.Driver);
        Assert.Equal("kubepods-besteffort-pod0f1e.slice", parsed.Slice);
        Assert.Equal("cri-containerd-abc123.scope", parsed.Unit);
        Assert.Equal("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e.slice/cri-containerd-abc123.scope", parsed.Path);
    }

    [Theory]
    [InlineData(":cri-containerd:abc", "system.slice", "cri-containerd-abc.scope", "/system.slice/cri-containerd-abc.scope")]
    [InlineData("-.slice::abc", "-.slice", "abc.scope", "/abc.scope")]
    [InlineData("machine.slice:x:sub.slice", "machine.slice", "sub.slice", "/machine.slice/sub.slice")]
    public void Systemd_defaults_follow_runc(string raw, string slice, string unit, string path)
    {
        var parsed = CgroupsPath.Parse(raw);
        Assert.Equal((slice, unit, path), (parsed.Slice, parsed.Unit, parsed.Path));
    }

    [Theory]
    [InlineData("")]
    [InlineData("/")]
    [InlineData("/kubepods/../etc")]
    [InlineData("/a/./b")]
    [InlineData("a:b")]
    [InlineData("a:b:c:d")]
    [InlineData("kubepods.slice:prefix:")]
    [InlineData("notaslice:prefix:name")]
    [InlineData("kube--pods.slice:prefix:name")]
    [InlineData("-kubepods.slice:prefix:name")]
    [InlineData("kube/pods.slice:prefix:name")]
    [InlineData("/kubepods\n/x")]
    public void Anything_else_is_refused_with_the_path_in_the_message(string raw)
    {
        var e = Assert.Throws<FormatException>(() => CgroupsPath.Parse(raw));
        Assert.Contains("linux.cgroupsPath", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a.slice", "/a.slice")]
    [InlineData("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice")]
    [InlineData("-.slice", "/")]
    public void Slices_expand_as_systemd_nests_them(string slice, string path) => Assert.Equal(path, CgroupsPath.ExpandSlice(slice));
}
