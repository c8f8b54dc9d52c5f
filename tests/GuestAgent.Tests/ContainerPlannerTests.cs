using System.Text;
using ShimV2.GuestAgent.Helper;
using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.Oci;
using ShimV2.GuestAgent.Tests.Support;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

public sealed class ContainerPlannerTests : IDisposable
{
    // containerd's default spec for `ctr run` (trimmed), with a bind mount the shim rewrote into the share.
    private const string CtrSpec = """
        {
          "ociVersion": "1.1.0",
          "process": {
            "user": { "uid": 0, "gid": 0, "additionalGids": [10] },
            "args": [ "sh", "-c", "echo hello" ],
            "env": [ "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" ],
            "cwd": "/work",
            "capabilities": {
              "bounding": [ "CAP_CHOWN", "CAP_KILL" ],
              "effective": [ "CAP_CHOWN", "CAP_KILL" ],
              "permitted": [ "CAP_CHOWN", "CAP_KILL" ]
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512 } ],
            "noNewPrivileges": true
          },
          "root": { "path": "rootfs", "readonly": true },
          "hostname": "box",
          "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc", "options": [ "nosuid", "noexec", "nodev" ] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": [ "nosuid", "strictatime", "mode=755", "size=65536k" ] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": [ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5" ] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [ "nosuid", "noexec", "nodev", "ro" ] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": [ "nosuid", "noexec", "nodev", "relatime", "ro" ] },
            { "destination": "/etc/hosts", "type": "bind", "source": "SHARE/c1/mounts/6-hosts", "options": [ "rbind", "ro" ] },
            { "destination": "/data", "type": "bind", "source": "/var/lib/not-shared", "options": [ "rbind" ] }
          ],
          "linux": {
            "namespaces": [ { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "network" } ],
            "maskedPaths": [ "/proc/kcore", "/sys/firmware" ],
            "readonlyPaths": [ "/proc/sys" ],
            "sysctl": { "net.ipv4.ip_forward": "1" }
          }
        }
        """;

    private readonly TempDir _temp = new();
    private readonly string _share;
    private readonly string _dev;

    public ContainerPlannerTests()
    {
        _share = _temp.Make("shared");
        _temp.Make("shared/c1/mounts/6-hosts", "127.0.0.1 localhost\n");
        _dev = _temp.Make("dev");
        foreach (var node in new[] { "null", "zero", "urandom" })
        {
            _temp.Make($"dev/{node}", "");
        }
    }

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Ctr_default_spec_becomes_namespaces_mounts_devices_and_process()
    {
        var plan = PlanCtr(terminal: false);
        var records = Records.Of(plan.Instructions);

        Assert.Equal(HelperOp.Mode, records[0].Op);
        Assert.Equal((uint)HelperMode.Create, records.U32Of(HelperOp.Mode));
        var ns = Libc.CLONE_NEWNS | Libc.CLONE_NEWPID | Libc.CLONE_NEWIPC | Libc.CLONE_NEWUTS;
        Assert.Equal(ns, records.U32Of(HelperOp.Unshare));
        Assert.Equal(ns, plan.NamespaceFlags);
        Assert.Equal("/run/csharp/shared/c1/rootfs", records.Strings(HelperOp.Rootfs).Single());
        Assert.Equal((uint)(Libc.MS_SLAVE | Libc.MS_REC), records.U32Of(HelperOp.RootPropagation));

        var mounts = records.Mounts().ToList();
        var proc = mounts.Single(m => m.Target == "/proc");
        Assert.Equal(("proc", "proc", Libc.MS_NOSUID | Libc.MS_NOEXEC | Libc.MS_NODEV, ""), (proc.Source, proc.FsType, proc.Flags, proc.Data));
        var dev = mounts.Single(m => m.Target == "/dev");
        Assert.Equal(("tmpfs", Libc.MS_NOSUID | Libc.MS_STRICTATIME, "mode=755,size=65536k"), (dev.FsType, dev.Flags, dev.Data));
        Assert.Equal("newinstance,ptmxmode=0666,mode=0620,gid=5", mounts.Single(m => m.Target == "/dev/pts").Data);
        Assert.Equal(Libc.MS_NOSUID | Libc.MS_NOEXEC | Libc.MS_NODEV | Libc.MS_RDONLY, mounts.Single(m => m.Target == "/sys").Flags);
        var cgroup = mounts.Single(m => m.Target == "/sys/fs/cgroup");
        Assert.Equal("cgroup2", cgroup.FsType);

        // The shared bind source is used as the shim rewrote it; a host path the guest cannot see is skipped.
        var hosts = mounts.Single(m => m.Target == "/etc/hosts");
        Assert.Equal(Path.Combine(_share, "c1/mounts/6-hosts"), hosts.Source);
        Assert.Equal(Libc.MS_BIND | Libc.MS_REC | Libc.MS_RDONLY, hosts.Flags);
        Assert.Equal(MountTargetKind.Auto, hosts.Kind);
        Assert.DoesNotContain(mounts, m => m.Target == "/data");
        Assert.Contains(plan.Warnings, w => w.Contains("/var/lib/not-shared", StringComparison.Ordinal));

        // Spec mounts come first (in order), then the guest's device nodes bound into the new /dev.
        Assert.Equal(["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/etc/hosts", "/dev/null", "/dev/zero", "/dev/urandom"], mounts.Select(m => m.Target));
        Assert.All(mounts.Where(m => m.Target is "/dev/null" or "/dev/zero"), m => Assert.Equal((Libc.MS_BIND, MountTargetKind.File), (m.Flags, m.Kind)));
        Assert.Contains(records.Where(r => r.Op == HelperOp.Symlink), r => Symlink(r) == ("pts/ptmx", "/dev/ptmx"));
        Assert.Contains(records.Where(r => r.Op == HelperOp.Symlink), r => Symlink(r) == ("/proc/self/fd", "/dev/fd"));

        Assert.Equal(["box"], records.Strings(HelperOp.Hostname));
        Assert.Equal(["/proc/kcore", "/sys/firmware"], records.Strings(HelperOp.Mask));
        Assert.Equal(["/proc/sys"], records.Strings(HelperOp.Readonly));
        Assert.Single(records, r => r.Op == HelperOp.RootReadonly);
        var sysctl = new PayloadReader(records.Single(r => r.Op == HelperOp.Sysctl).Payload);
        Assert.Equal(("net.ipv4.ip_forward", "1"), (sysctl.Str(), sysctl.Str()));

        var mkdir = new PayloadReader(records.Single(r => r.Op == HelperOp.Mkdir).Payload);
        Assert.Equal((0b111_101_101u, "/work"), (mkdir.U32(), mkdir.Rest()));
        Assert.Equal(["/work"], records.Strings(HelperOp.Cwd));
        Assert.Equal(["sh", "-c", "echo hello"], records.Strings(HelperOp.Arg));
        Assert.Equal(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"], records.Strings(HelperOp.Env));
        Assert.Single(records, r => r.Op == HelperOp.Setsid);
        Assert.DoesNotContain(records, r => r.Op == HelperOp.Terminal);
        Assert.Single(records, r => r.Op == HelperOp.NoNewPrivs);
        Assert.Equal(0b10010u, records.U32Of(HelperOp.Umask));

        var user = new PayloadReader(records.Single(r => r.Op == HelperOp.User).Payload);
        Assert.Equal((0u, 0u, 1u, 10u), (user.U32(), user.U32(), user.U32(), user.U32()));
        var caps = new PayloadReader(records.Single(r => r.Op == HelperOp.Caps).Payload);
        var chownKill = (1UL << 0) | (1UL << 5);
        Assert.Equal((chownKill, chownKill, chownKill, 0UL, 0UL), (caps.U64(), caps.U64(), caps.U64(), caps.U64(), caps.U64()));
        var rlimit = new PayloadReader(records.Single(r => r.Op == HelperOp.Rlimit).Payload);
        Assert.Equal((7u, 512UL, 1024UL), (rlimit.U32(), rlimit.U64(), rlimit.U64()));
    }

    [Fact]
    public void Terminal_binds_the_pty_as_dev_console_and_makes_it_the_controlling_terminal()
    {
        var plan = PlanCtr(terminal: true, consolePath: "/dev/pts/7");
        var records = Records.Of(plan.Instructions);
        Assert.Single(records, r => r.Op == HelperOp.Terminal);
        Assert.DoesNotContain(records, r => r.Op == HelperOp.Setsid);
        var console = records.Mounts().Single(m => m.Target == "/dev/console");
        Assert.Equal(("/dev/pts/7", Libc.MS_BIND, MountTargetKind.File), (console.Source, console.Flags, console.Kind));
    }

    [Fact]
    public void Without_cgroup2_the_cgroup_mount_is_skipped_with_a_warning()
    {
        var plan = ContainerPlanner.PlanCreate(Ctr(), "/r", false, null, Context() with { Cgroup2 = false });
        Assert.DoesNotContain(Records.Of(plan.Instructions).Mounts(), m => m.Target == "/sys/fs/cgroup");
        Assert.Contains(plan.Warnings, w => w.Contains("cgroup", StringComparison.Ordinal));
    }

    [Fact]
    public void Namespace_paths_without_a_pod_sandbox_in_the_VM_are_warned_about()
    {
        var spec = Ctr();
        spec.Linux!.Namespaces = [new OciNamespace { Type = "uts", Path = "/proc/42/ns/uts" }, new OciNamespace { Type = "ipc", Path = "/proc/42/ns/ipc" }, new OciNamespace { Type = "pid", Path = "/proc/42/ns/pid" }, new OciNamespace { Type = "mount" }, new OciNamespace { Type = "network" }];
        var plan = ContainerPlanner.PlanCreate(spec, "/r", false, null, Context());
        Assert.Equal(Libc.CLONE_NEWNS | Libc.CLONE_NEWPID, plan.NamespaceFlags);
        Assert.DoesNotContain(Records.Of(plan.Instructions), r => r.Op == HelperOp.SetNs);
        Assert.Empty(Records.Of(plan.Instructions).Strings(HelperOp.Hostname));
        Assert.Contains(plan.Warnings, w => w.Contains("hostname", StringComparison.Ordinal));
        Assert.Contains(plan.Warnings, w => w.StartsWith("ipc namespace path /proc/42/ns/ipc names a namespace outside the VM", StringComparison.Ordinal));
        Assert.Contains(plan.Warnings, w => w.StartsWith("pid namespace path /proc/42/ns/pid", StringComparison.Ordinal) && w.EndsWith("a PID namespace of its own", StringComparison.Ordinal));
    }

    [Fact]
    public void Apparmor_profile_and_selinux_label_are_not_applied_and_say_so()
    {
        var spec = Ctr();
        spec.Process!.ApparmorProfile = "cri-containerd.apparmor.d";
        spec.Process.SelinuxLabel = "system_u:system_r:container_t:s0";
        var plan = ContainerPlanner.PlanCreate(spec, "/r", false, null, Context());
        Assert.Contains(plan.Warnings, w => w.StartsWith("AppArmor profile \"cri-containerd.apparmor.d\" not applied", StringComparison.Ordinal));
        Assert.Contains(plan.Warnings, w => w.StartsWith("SELinux label \"system_u:system_r:container_t:s0\" not applied", StringComparison.Ordinal));
        Assert.DoesNotContain(ContainerPlanner.PlanCreate(Ctr(), "/r", false, null, Context()).Warnings, w => w.Contains("AppArmor", StringComparison.Ordinal));

        var exec = OciJson.ParseProcess("""{"args":["ps"],"apparmorProfile":"custom"}"""u8);
        Assert.Contains(ContainerPlanner.PlanExec(123, Libc.CLONE_NEWNS, exec, terminal: false).Warnings, w => w.Contains("AppArmor profile \"custom\"", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("user", "user namespaces are not supported")]
    [InlineData("bogus", "unknown namespace type \"bogus\"")]
    public void Unsupported_namespaces_are_refused(string type, string message)
    {
        var spec = Ctr();
        spec.Linux!.Namespaces = [new OciNamespace { Type = type }];
        var e = Assert.Throws<AgentException>(() => ContainerPlanner.PlanCreate(spec, "/r", false, null, Context()));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"process":{"args":[]}}""", "process args must not be empty")]
    [InlineData("""{"process":{"args":["sh"],"cwd":"relative"}}""", "cwd \"relative\" is not an absolute path")]
    [InlineData("""{"process":{"args":["sh"],"env":["NOEQUALS"]}}""", "environment entry \"NOEQUALS\" has no '='")]
    [InlineData("""{"process":{"args":["sh"],"rlimits":[{"type":"RLIMIT_BOGUS","hard":1,"soft":1}]}}""", "unknown rlimit type \"RLIMIT_BOGUS\"")]
    [InlineData("""{"process":{"args":["sh"]},"linux":{"sysctl":{"../../etc":"x"}}}""", "invalid sysctl")]
    [InlineData("""{"process":{"args":["a\u0000b"]}}""", "NUL")]
    [InlineData("""{"root":{"path":"r"}}""", "the OCI spec has no process")]
    [InlineData("""{"process":{"args":["sh"]},"linux":{"rootfsPropagation":"sideways"}}""", "unknown rootfsPropagation \"sideways\"")]
    public void Bad_specs_are_invalid_arguments_with_a_readable_reason(string json, string message)
    {
        var spec = OciJson.ParseSpec(Encoding.UTF8.GetBytes(json));
        var e = Assert.Throws<AgentException>(() => ContainerPlanner.PlanCreate(spec, "/r", false, null, Context()));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Home_comes_from_the_containers_passwd()
    {
        var rootfs = _temp.Make("rootfs");
        _temp.Make("rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
        var spec = OciJson.ParseSpec("""{"process":{"args":["id"],"user":{"uid":1000,"gid":1000}}}"""u8);
        var env = Records.Of(ContainerPlanner.PlanCreate(spec, rootfs, false, null, Context()).Instructions).Strings(HelperOp.Env);
        Assert.Equal(["HOME=/home/app"], env);

        var explicitHome = OciJson.ParseSpec("""{"process":{"args":["id"],"env":["HOME=/x"],"user":{"uid":1000}}}"""u8);
        Assert.Equal(["HOME=/x"], Records.Of(ContainerPlanner.PlanCreate(explicitHome, rootfs, false, null, Context()).Instructions).Strings(HelperOp.Env));
    }

    [Fact]
    public void Exec_joins_the_containers_namespaces_mount_last()
    {
        var process = OciJson.ParseProcess("""{"args":["ps"],"env":["A=1"],"cwd":"/tmp","user":{"uid":5,"gid":6},"terminal":true}"""u8);
        var flags = Libc.CLONE_NEWNS | Libc.CLONE_NEWPID | Libc.CLONE_NEWIPC | Libc.CLONE_NEWUTS;
        var plan = ContainerPlanner.PlanExec(123, flags, process, terminal: true);
        var records = Records.Of(plan.Instructions);
        Assert.Equal((uint)HelperMode.Exec, records.U32Of(HelperOp.Mode));
        var joins = records.Where(r => r.Op == HelperOp.SetNs).Select(r =>
        {
            var p = new PayloadReader(r.Payload);
            return (p.U32(), p.Rest());
        }).ToList();
        Assert.Equal(
            [(Libc.CLONE_NEWIPC, "/proc/123/ns/ipc"), (Libc.CLONE_NEWUTS, "/proc/123/ns/uts"), (Libc.CLONE_NEWPID, "/proc/123/ns/pid"), (Libc.CLONE_NEWNS, "/proc/123/ns/mnt")],
            joins);
        Assert.DoesNotContain(records, r => r.Op is HelperOp.Unshare or HelperOp.Rootfs or HelperOp.Mount);
        Assert.Single(records, r => r.Op == HelperOp.Terminal);
        Assert.Equal(["/tmp"], records.Strings(HelperOp.Cwd));
        Assert.Equal(["A=1", "HOME=/"], records.Strings(HelperOp.Env));
    }

    [Fact]
    public void Encode_and_decode_round_trip_with_the_documented_framing()
    {
        var ins = new HelperInstructions().Mode(HelperMode.Create).Arg("échо").Rlimit(7, 1, 2);
        var bytes = ins.Encode();
        Assert.Equal("CSNX"u8.ToArray(), bytes[..4]);
        Assert.Equal(1u, BitConverter.ToUInt32(bytes, 4));
        Assert.Equal(8 + (8 + 4) + (8 + Encoding.UTF8.GetByteCount("échо")) + (8 + 20) + 8, bytes.Length);
        Assert.Equal(new byte[8], bytes[^8..]); // End: op 0, length 0
        var decoded = HelperInstructions.Decode(bytes);
        Assert.Equal([HelperOp.Mode, HelperOp.Arg, HelperOp.Rlimit], decoded.Select(r => r.Op));
        Assert.Throws<FormatException>(() => HelperInstructions.Decode(bytes.AsSpan(0, bytes.Length - 9)));
    }

    [Fact]
    public void A_privileged_spec_gets_the_guests_device_nodes_and_no_warning_for_host_only_ones()
    {
        _temp.Make("dev/kmsg", "");
        _temp.Make("dev/net/tun", "");
        _temp.Make("dev/pts/0", "");
        _temp.Make("dev/console", "");
        _temp.Make("dev/vport1p1", "");
        _temp.Make("dev/virtio-ports/agent.0", "");
        File.CreateSymbolicLink(Path.Combine(_dev, "stdout"), "/proc/self/fd/1");
        var spec = Ctr();
        spec.Linux!.Devices = [new OciDevice { Path = "/dev/sda", Type = "b", Major = 8 }];
        spec.Linux.Resources = new OciLinuxResources
        {
            Devices = [new OciDeviceCgroup { Allow = false, Access = "rwm" }, new OciDeviceCgroup { Allow = true, Access = "rwm" }],
        };

        var plan = ContainerPlanner.PlanCreate(spec, "/run/csharp/shared/c1/rootfs", false, null, Context());

        var devices = Records.Of(plan.Instructions).Mounts().Where(m => m.Flags == Libc.MS_BIND && m.Kind == MountTargetKind.File).ToList();
        Assert.Equal(["/dev/null", "/dev/zero", "/dev/urandom", "/dev/kmsg", "/dev/net/tun"], devices.Select(m => m.Target));
        Assert.Equal(Path.Combine(_dev, "net/tun"), devices.Single(m => m.Target == "/dev/net/tun").Source);
        Assert.DoesNotContain(plan.Warnings, w => w.Contains("/dev/sda", StringComparison.Ordinal));
    }

    [Fact]
    public void An_unprivileged_spec_gets_only_its_listed_devices_and_one_warning_for_those_the_guest_lacks()
    {
        _temp.Make("dev/kmsg", "");
        _temp.Make("dev/fuse", "");
        var spec = Ctr();
        spec.Linux!.Devices = [new OciDevice { Path = "/dev/fuse" }, new OciDevice { Path = "/dev/sda" }, new OciDevice { Path = "/dev/sdb" }];
        spec.Linux.Resources = new OciLinuxResources
        {
            Devices = [new OciDeviceCgroup { Allow = false, Access = "rwm" }, new OciDeviceCgroup { Allow = true, Type = "c", Major = 10, Minor = 229, Access = "rwm" }],
        };

        var plan = ContainerPlanner.PlanCreate(spec, "/run/csharp/shared/c1/rootfs", false, null, Context());

        var targets = Records.Of(plan.Instructions).Mounts().Where(m => m.Kind == MountTargetKind.File).Select(m => m.Target).ToList();
        Assert.Contains("/dev/fuse", targets);
        Assert.DoesNotContain("/dev/kmsg", targets);
        Assert.Equal("devices /dev/sda, /dev/sdb skipped: the guest has no such node", Assert.Single(plan.Warnings, w => w.Contains("/dev/sd", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("rshared", "rshared", Libc.MS_SHARED | Libc.MS_REC, Libc.MS_SHARED | Libc.MS_REC)]
    [InlineData("rslave", "rslave", Libc.MS_SLAVE | Libc.MS_REC, Libc.MS_SLAVE | Libc.MS_REC)]
    [InlineData("private", "rprivate", Libc.MS_PRIVATE | Libc.MS_REC, Libc.MS_PRIVATE | Libc.MS_REC)]
    [InlineData("", "shared", Libc.MS_SLAVE | Libc.MS_REC, Libc.MS_SHARED)]
    public void Root_and_bind_propagation_and_options_are_the_specs_without_nosuid_or_nodev(string rootfsPropagation, string bindPropagation, ulong root, ulong bind)
    {
        _temp.Make("shared/c1/mounts/0-vol/file", "");
        var spec = Ctr();
        spec.Linux!.RootfsPropagation = rootfsPropagation;
        spec.Mounts = [new OciMount { Destination = "/vol", Type = "bind", Source = Path.Combine(_share, "c1/mounts/0-vol"), Options = ["rbind", bindPropagation] }];

        var records = Records.Of(ContainerPlanner.PlanCreate(spec, "/run/csharp/shared/c1/rootfs", false, null, Context()).Instructions);

        Assert.Equal((uint)root, records.U32Of(HelperOp.RootPropagation));
        var vol = records.Mounts().Single(m => m.Target == "/vol");
        Assert.Equal((Libc.MS_BIND | Libc.MS_REC, bind), (vol.Flags, vol.Propagation));
        Assert.DoesNotContain(records, r => r.Op == HelperOp.NoPivot);
    }

    private static (string, string) Symlink(HelperRecord r)
    {
        var p = new PayloadReader(r.Payload);
        return (p.Str(), p.Str());
    }

    private OciSpec Ctr() => OciJson.ParseSpec(Encoding.UTF8.GetBytes(CtrSpec.Replace("SHARE", _share, StringComparison.Ordinal)));

    private PlannerContext Context() => new() { Cgroup2 = true, SharePath = _share, GuestDevDirectory = _dev };

    private ProcessPlan PlanCtr(bool terminal, string? consolePath = null) =>
        ContainerPlanner.PlanCreate(Ctr(), "/run/csharp/shared/c1/rootfs", terminal, consolePath, Context());
}
