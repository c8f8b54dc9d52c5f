using System.Text;
using ShimV2.GuestAgent.Helper;
using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.Oci;
using ShimV2.GuestAgent.Tests.Support;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

/// <summary>A pod's containers in one VM: CRI's /proc/PID/ns paths, host namespaces and sysctls.</summary>
public sealed class PodNamespaceTests
{
    private static readonly PodSandbox Pause = new("pod1", 77);

    [Theory]
    [InlineData("/proc/4242/ns/pid", "pid", true)]
    [InlineData("/proc/1/ns/ipc", "ipc", true)]
    [InlineData("/proc/4242/ns/ipc", "pid", false)]
    [InlineData("/proc/self/ns/pid", "pid", false)]
    [InlineData("/proc//ns/pid", "pid", false)]
    [InlineData("/proc/12/ns/pid/x", "pid", false)]
    [InlineData("/var/run/netns/cni-1", "net", false)]
    [InlineData("/proc/+12/ns/pid", "pid", false)]
    public void A_process_namespace_path_is_recognised_whatever_the_pid(string path, string file, bool expected) =>
        Assert.Equal(expected, PodNamespaces.IsProcessNamespacePath(path, file));

    [Fact]
    public void A_pod_container_in_POD_pid_mode_joins_the_sandboxs_pid_ipc_and_uts_namespaces()
    {
        var plan = Plan(AppSpec(pidPath: "/proc/4242/ns/pid"), Pause);
        var records = Records.Of(plan.Instructions);
        Assert.Equal(
            [(Libc.CLONE_NEWIPC, "/proc/77/ns/ipc"), (Libc.CLONE_NEWPID, "/proc/77/ns/pid"), (Libc.CLONE_NEWUTS, "/proc/77/ns/uts")],
            Joins(records).OrderBy(j => j.Item2, StringComparer.Ordinal).ToList());
        Assert.Equal(Libc.CLONE_NEWNS, records.U32Of(HelperOp.Unshare));
        Assert.Equal(Libc.CLONE_NEWNS | Libc.CLONE_NEWPID | Libc.CLONE_NEWIPC | Libc.CLONE_NEWUTS, plan.NamespaceFlags);
        Assert.True(plan.SharesPidNamespace);
        Assert.DoesNotContain(plan.Warnings, w => w.Contains("namespace", StringComparison.Ordinal));

        // The setns records come before the unshare: the helper joins, then creates the mount namespace.
        var ops = records.Select(r => r.Op).ToList();
        Assert.True(ops.LastIndexOf(HelperOp.SetNs) < ops.IndexOf(HelperOp.Unshare));
    }

    [Fact]
    public void CONTAINER_pid_mode_gives_a_pid_namespace_of_its_own_and_still_shares_ipc_and_uts()
    {
        var plan = Plan(AppSpec(pidPath: ""), Pause);
        var records = Records.Of(plan.Instructions);
        Assert.Equal(Libc.CLONE_NEWNS | Libc.CLONE_NEWPID, records.U32Of(HelperOp.Unshare));
        Assert.Equal(["/proc/77/ns/ipc", "/proc/77/ns/uts"], Joins(records).Select(j => j.Item2).Order(StringComparer.Ordinal));
        Assert.False(plan.SharesPidNamespace);
    }

    [Fact]
    public void A_path_that_is_not_a_process_namespace_is_not_joined_and_is_warned_about()
    {
        var spec = AppSpec(pidPath: "/proc/4242/ns/pid");
        spec.Linux!.Namespaces!.Single(n => n.Type == "ipc").Path = "/var/run/ipcns/x";
        var plan = Plan(spec, Pause);
        Assert.DoesNotContain(Joins(Records.Of(plan.Instructions)), j => j.Item1 == Libc.CLONE_NEWIPC);
        Assert.Contains(plan.Warnings, w => w == "ipc namespace path /var/run/ipcns/x is not a /proc/<pid>/ns/ipc path of the pod's sandbox pod1: the container shares the VM's IPC namespace");
    }

    [Fact]
    public void Host_pid_and_ipc_are_the_VMs_own_namespaces_and_say_so()
    {
        var spec = AppSpec(pidPath: "/proc/4242/ns/pid");
        spec.Linux!.Namespaces!.RemoveAll(n => n.Type is "pid" or "ipc");
        var plan = Plan(spec, Pause);
        var records = Records.Of(plan.Instructions);
        Assert.Equal(Libc.CLONE_NEWNS, records.U32Of(HelperOp.Unshare));
        Assert.Equal(["/proc/77/ns/uts"], Joins(records).Select(j => j.Item2));
        Assert.True(plan.SharesPidNamespace);
        Assert.Contains(plan.Warnings, w => w.StartsWith("no pid namespace in the spec (host PID): the container shares the VM's PID namespace", StringComparison.Ordinal));
        Assert.Contains(plan.Warnings, w => w.StartsWith("no ipc namespace in the spec (host IPC)", StringComparison.Ordinal));
    }

    [Fact]
    public void The_sandbox_creates_its_namespaces_and_writes_the_pods_sysctls_in_them()
    {
        var spec = Spec("""
            {"process":{"args":["/pause"]},"hostname":"pod",
             "annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"pod1"},
             "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network","path":"/var/run/netns/cni-1"}],
                      "sysctl":{"kernel.shm_rmid_forced":"1","fs.mqueue.msg_max":"20","net.ipv4.ip_unprivileged_port_start":"81","kernel.domainname":"example"}}}
            """);
        var plan = Plan(spec, sandbox: null);
        var records = Records.Of(plan.Instructions);
        Assert.Equal(Libc.CLONE_NEWNS | Libc.CLONE_NEWPID | Libc.CLONE_NEWIPC | Libc.CLONE_NEWUTS, records.U32Of(HelperOp.Unshare));
        Assert.Empty(Joins(records));
        Assert.Equal(
            ["fs.mqueue.msg_max=20", "kernel.domainname=example", "kernel.shm_rmid_forced=1", "net.ipv4.ip_unprivileged_port_start=81"],
            Sysctls(records).Order(StringComparer.Ordinal));
        Assert.Empty(plan.Warnings);
    }

    [Fact]
    public void A_pod_containers_ipc_sysctl_is_written_in_the_pods_ipc_namespace_it_joins()
    {
        var spec = AppSpec(pidPath: "/proc/4242/ns/pid");
        spec.Linux!.Sysctl = new() { ["kernel.msgmax"] = "16384" };
        var records = Records.Of(Plan(spec, Pause).Instructions);
        Assert.Contains((Libc.CLONE_NEWIPC, "/proc/77/ns/ipc"), Joins(records));
        Assert.Equal(["kernel.msgmax=16384"], Sysctls(records));
    }

    [Theory]
    [InlineData("kernel.shm_rmid_forced", """[{"type":"pid"},{"type":"network"}]""", "sysctl \"kernel.shm_rmid_forced\" is not allowed in the host's (the VM's) IPC namespace")]
    [InlineData("fs.mqueue.msg_max", """[{"type":"network"}]""", "is not allowed in the host's (the VM's) IPC namespace")]
    [InlineData("net.core.somaxconn", """[{"type":"ipc"}]""", "sysctl \"net.core.somaxconn\" is not allowed in the host network namespace")]
    [InlineData("vm.swappiness", """[{"type":"ipc"},{"type":"uts"},{"type":"network"}]""", "sysctl \"vm.swappiness\" is not in a separate kernel namespace")]
    [InlineData("kernel.hostname", """[{"type":"uts"}]""", "conflicts with the OCI \"hostname\" field")]
    [InlineData("kernel.domainname", """[{"type":"ipc"}]""", "is not in a separate kernel namespace")]
    [InlineData("net/ipv4/ip_forward", """[{"type":"network"}]""", "invalid sysctl")]
    public void Sysctls_outside_the_containers_namespaces_are_refused_as_runc_refuses_them(string key, string namespaces, string message)
    {
        var spec = Spec("""{"process":{"args":["sh"]},"linux":{"namespaces":""" + namespaces + ""","sysctl":{""" + $"\"{key}\"" + """:"1"}}}""");
        var e = Assert.Throws<AgentException>(() => Plan(spec, sandbox: null));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_pod_sandbox_is_named_by_the_CRI_annotation_else_by_the_agents_sandbox()
    {
        var annotations = new Dictionary<string, string> { ["io.kubernetes.cri.sandbox-id"] = "pod1", ["io.kubernetes.cri.container-type"] = "container" };
        Assert.Equal("pod1", PodNamespaces.SandboxIdOf(annotations, "other"));
        Assert.Equal("vm-pod", PodNamespaces.SandboxIdOf(null, "vm-pod"));
        Assert.False(PodNamespaces.IsSandboxContainer(annotations, "c1", "pod1"));
        Assert.True(PodNamespaces.IsSandboxContainer(new Dictionary<string, string> { ["io.kubernetes.cri.container-type"] = "sandbox" }, "x", "pod1"));
        Assert.True(PodNamespaces.IsSandboxContainer(null, "pod1", "pod1"));
    }

    /// <summary>An app container's spec as containerd's CRI writes it (namespaces and annotations only).</summary>
    private static OciSpec AppSpec(string pidPath)
    {
        var pid = pidPath.Length > 0 ? $$"""{"type":"pid","path":"{{pidPath}}"},""" : """{"type":"pid"},""";
        return Spec($$$"""
            {"process":{"args":["top"]},
             "annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"pod1"},
             "linux":{"namespaces":[{{{pid}}}{"type":"ipc","path":"/proc/4242/ns/ipc"},{"type":"uts","path":"/proc/4242/ns/uts"},
                                    {"type":"mount"},{"type":"network","path":"/proc/4242/ns/net"}]}}
            """);
    }

    private static OciSpec Spec(string json) => OciJson.ParseSpec(Encoding.UTF8.GetBytes(json));

    private static ProcessPlan Plan(OciSpec spec, PodSandbox? sandbox) =>
        ContainerPlanner.PlanCreate(spec, "/r", false, null, new PlannerContext { Cgroup2 = true, Sandbox = sandbox });

    private static List<(uint, string)> Joins(IEnumerable<HelperRecord> records) =>
        records.Where(r => r.Op == HelperOp.SetNs).Select(r =>
        {
            var p = new PayloadReader(r.Payload);
            return (p.U32(), p.Rest());
        }).ToList();

    private static IEnumerable<string> Sysctls(IEnumerable<HelperRecord> records) =>
        records.Where(r => r.Op == HelperOp.Sysctl).Select(r =>
        {
            var p = new PayloadReader(r.Payload);
            return $"{p.Str()}={p.Str()}";
        });
}
