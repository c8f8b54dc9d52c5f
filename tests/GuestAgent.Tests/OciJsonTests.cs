using System.Text;
using ShimV2.GuestAgent.Oci;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

public class OciJsonTests
{
    [Fact]
    public void Spec_fields_the_agent_uses_are_read_and_unknown_ones_ignored()
    {
        var spec = OciJson.ParseSpec("""
            {
              "ociVersion": "1.2.0",
              "process": {
                "terminal": true,
                "consoleSize": { "height": 24, "width": 80 },
                "user": { "uid": 1000, "gid": 1000, "umask": 63, "additionalGids": [ 5, 6 ] },
                "args": [ "sh" ],
                "cwd": "/",
                "oomScoreAdj": -500,
                "apparmorProfile": "unused",
                "somethingNew": { "nested": [ 1, 2, 3 ] }
              },
              "root": { "path": "rootfs", "readonly": true },
              "linux": {
                "resources": {
                  "memory": { "limit": 1048576, "swap": -1 },
                  "cpu": { "shares": 1024, "quota": -1, "period": 100000, "cpus": "0-1" },
                  "pids": { "limit": 32 },
                  "blockIO": { "weight": 500 },
                  "unified": { "memory.high": "1000000" }
                },
                "seccomp": { "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [] },
                "uidMappings": [ { "containerID": 0, "hostID": 1000, "size": 1 } ],
                "rootfsPropagation": "rslave"
              },
              "annotations": { "io.kubernetes.cri.container-type": "container" }
            }
            """u8);
        var p = spec.Process!;
        Assert.True(p.Terminal);
        Assert.Equal((24u, 80u), (p.ConsoleSize!.Height, p.ConsoleSize.Width));
        Assert.Equal((1000u, 1000u, 63u), (p.User!.Uid, p.User.Gid, p.User.Umask!.Value));
        Assert.Equal([5u, 6u], p.User.AdditionalGids!);
        Assert.Equal(-500, p.OomScoreAdj);
        Assert.True(spec.Root!.Readonly);
        var r = spec.Linux!.Resources!;
        Assert.Equal((1048576L, -1L), (r.Memory!.Limit!.Value, r.Memory.Swap!.Value));
        Assert.Equal((1024UL, -1L, 100000UL, "0-1"), (r.Cpu!.Shares!.Value, r.Cpu.Quota!.Value, r.Cpu.Period!.Value, r.Cpu.Cpus));
        Assert.Equal(32, r.Pids!.Limit);
        Assert.Equal((ushort)500, r.BlockIo!.Weight);
        Assert.Equal("1000000", r.Unified!["memory.high"]);
        Assert.Equal("rslave", spec.Linux.RootfsPropagation);
        Assert.Equal("container", spec.Annotations!["io.kubernetes.cri.container-type"]);
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("{\"process\": {\"args\": \"not-a-list\"}}")]
    [InlineData("{\"process\": {\"user\": {\"uid\": -1}}}")]
    [InlineData("[1, 2]")]
    [InlineData("null")]
    [InlineData("{\"mounts\": [ {\"destination\": 5} ]}")]
    public void Malformed_specs_are_invalid_arguments(string json)
    {
        var e = Assert.Throws<AgentException>(() => OciJson.ParseSpec(Encoding.UTF8.GetBytes(json)));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.StartsWith("OCI spec ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Process_and_resources_parse_on_their_own()
    {
        var process = OciJson.ParseProcess("""{"args":["ls","-l"],"env":["A=b"],"noNewPrivileges":true}"""u8);
        Assert.Equal(["ls", "-l"], process.Args!);
        Assert.True(process.NoNewPrivileges);

        var resources = OciJson.ParseResources("""{"pids":{"limit":7}}"""u8);
        Assert.Equal(7, resources.Pids!.Limit);

        var e = Assert.Throws<AgentException>(() => OciJson.ParseResources("""{"pids":{"limit":"lots"}}"""u8));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Contains("OCI LinuxResources is not valid JSON", e.Message, StringComparison.Ordinal);
    }
}
