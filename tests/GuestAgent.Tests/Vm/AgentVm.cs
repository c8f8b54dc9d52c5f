using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Agent.Protocol;
using ShimV2.Agent.Protocol.V1;
using ShimV2.Hypervisor;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests.Vm;

/// <summary>
/// One VM booted from the guest image exactly as the shim boots it (QemuVm, virtio-serial here, the 9p share
/// tagged csharpshare), with an AgentClient connected and CreateSandbox done. Containers get a busybox rootfs in
/// the share at &lt;share&gt;/&lt;id&gt;/rootfs, as the shim lays it out.
/// </summary>
public sealed class AgentVm : IAsyncLifetime
{
    public const string GuestSharePath = "/run/csharp/shared";
    public const string Hostname = "agent-test-vm";
    private static readonly TimeSpan BootTimeout = TimeSpan.FromSeconds(180);
    private static readonly string[] Applets = ["sh", "echo", "uname", "hostname", "sleep", "cat", "id", "ls", "true", "false", "wc", "stty", "ps", "pwd", "env", "yes", "tr", "cut", "grep", "head", "cp", "mkdir"];

    private readonly List<string> _mounts = [];
    private string? _root;
    private int _next;

    public QemuVm? Vm { get; private set; }

    /// <summary>From starting QEMU to the agent's first answer (Check).</summary>
    public TimeSpan BootTime { get; private set; }

    public AgentClient? Agent { get; private set; }

    public TtrpcClient? Connection { get; private set; }

    public string ShareDirectory => Path.Combine(_root!, "shared");

    public string ConsoleLog => Vm?.ConsoleLogPath ?? "(no vm)";

    /// <summary>The guest console of the last VM the tests booted.</summary>
    public static string LastConsoleLog => Path.Combine(Path.GetTempPath(), "guest-agent-vm-console.log");

    public async Task InitializeAsync()
    {
        if (AgentImage.SkipReason != null)
        {
            return;
        }

        // Short: QEMU's unix socket paths must stay under 108 bytes.
        _root = Directory.CreateTempSubdirectory("gat-").FullName;
        Directory.CreateDirectory(ShareDirectory);
        var config = new HypervisorConfig
        {
            KernelPath = AgentImage.Kernel,
            InitrdPath = AgentImage.Initrd,
            MemoryMiB = 512,
            VCpus = 1,
            BootTimeoutSeconds = (int)BootTimeout.TotalSeconds,

            // e.g. csharp.debug=1 for the agent's debug log on the console (see LastConsoleLog).
            KernelParams = Environment.GetEnvironmentVariable("CSHARP_GUEST_KERNEL_PARAMS") ?? "",
        };
        using var boot = new CancellationTokenSource(BootTimeout);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Vm = await QemuVm.StartAsync(
            new VmSpec
            {
                SandboxId = "agent-test",
                WorkDirectory = Path.Combine(_root, "vm"),
                Config = config,
                SharedDirectory = ShareDirectory,
                ShareMountTag = "csharpshare",
            },
            NullLoggerFactory.Instance,
            boot.Token);
        var stream = await Vm.ConnectAgentAsync(boot.Token);
        Connection = new TtrpcClient(stream);
        Agent = new AgentClient(Connection);
        var check = Agent.CheckAsync(new CheckRequest(), null, boot.Token);
        var first = await Task.WhenAny(check, Vm.Exited);
        if (first != check)
        {
            throw new InvalidOperationException($"the VM exited before the agent answered:\n{ConsoleTail()}");
        }

        await check;
        BootTime = clock.Elapsed;
        await Agent.CreateSandboxAsync(
            new CreateSandboxRequest
            {
                SandboxId = "agent-test",
                Hostname = Hostname,
                ShareMountTag = "csharpshare",
                ShareFstype = "9p",
                ShareGuestPath = GuestSharePath,
            },
            null,
            boot.Token);
    }

    /// <summary>Drops the connection and connects again (the agent must serve the port again).</summary>
    public async Task ReconnectAsync(CancellationToken ct)
    {
        await Connection!.DisposeAsync();
        var stream = await Vm!.ConnectAgentAsync(ct);
        Connection = new TtrpcClient(stream);
        Agent = new AgentClient(Connection);
    }

    public async Task DisposeAsync()
    {
        if (Connection != null)
        {
            await Connection.DisposeAsync();
        }

        if (Vm != null)
        {
            await Vm.DisposeAsync();
            try
            {
                // Kept for a look after the run (the work directory is removed).
                File.Copy(Vm.ConsoleLogPath, LastConsoleLog, overwrite: true);
            }
            catch (IOException)
            {
            }
        }

        foreach (var mount in Enumerable.Reverse(_mounts))
        {
            try
            {
                Run("umount", "-l", mount);
            }
            catch (InvalidOperationException)
            {
            }
        }

        if (_root != null)
        {
            try
            {
                Directory.Delete(_root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// Like the shim: a rootfs made elsewhere on the host, bind-mounted at &lt;share&gt;/&lt;id&gt;/rootfs, and a host
    /// file bind-mounted at &lt;share&gt;/&lt;id&gt;/mounts/0-hosts (returned: its guest path).
    /// </summary>
    public (string Id, string HostsGuestPath) NewBindMountedContainer(string prefix, string hostsContent)
    {
        var id = $"{prefix}-{Interlocked.Increment(ref _next)}";
        var outside = Path.Combine(_root!, "outside", id);
        MakeRootfs(outside);
        var rootfs = Path.Combine(ShareDirectory, id, "rootfs");
        Directory.CreateDirectory(rootfs);
        BindMount(outside, rootfs);
        var hostFile = Path.Combine(_root!, "outside", id + "-hosts");
        File.WriteAllText(hostFile, hostsContent);
        var target = Path.Combine(ShareDirectory, id, "mounts", "0-hosts");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.WriteAllBytes(target, []);
        BindMount(hostFile, target);
        return (id, $"{GuestSharePath}/{id}/mounts/0-hosts");
    }

    /// <summary>A fresh container id with a busybox rootfs in the share.</summary>
    public string NewContainer(string prefix)
    {
        var id = $"{prefix}-{Interlocked.Increment(ref _next)}";
        MakeRootfs(Path.Combine(ShareDirectory, id, "rootfs"));
        return id;
    }

    private void BindMount(string source, string target)
    {
        Run("mount", "--bind", source, target);
        _mounts.Add(target);
    }

    private static void Run(params string[] args)
    {
        var start = new System.Diagnostics.ProcessStartInfo(args[0]) { RedirectStandardError = true };
        foreach (var a in args.Skip(1))
        {
            start.ArgumentList.Add(a);
        }

        using var process = System.Diagnostics.Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{string.Join(' ', args)}: {error}");
        }
    }

    private static void MakeRootfs(string rootfs)
    {
        var bin = Path.Combine(rootfs, "bin");
        Directory.CreateDirectory(bin);
        File.Copy(AgentImage.BusyboxPath, Path.Combine(bin, "busybox"));
        foreach (var applet in Applets)
        {
            File.CreateSymbolicLink(Path.Combine(bin, applet), "busybox");
        }

        Directory.CreateDirectory(Path.Combine(rootfs, "etc"));
        File.WriteAllText(Path.Combine(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
        File.WriteAllText(Path.Combine(rootfs, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");
    }

    public static string GuestRootfs(string id) => $"{GuestSharePath}/{id}/rootfs";

    /// <summary>An OCI spec shaped like containerd's default (ctr run) for a busybox rootfs.</summary>
    public static byte[] Spec(string[] args, bool terminal = false, string hostname = "box", Action<JsonObject>? edit = null)
    {
        var spec = new JsonObject
        {
            ["ociVersion"] = "1.1.0",
            ["process"] = new JsonObject
            {
                ["terminal"] = terminal,
                ["user"] = new JsonObject { ["uid"] = 0, ["gid"] = 0 },
                ["args"] = new JsonArray(args.Select(a => (JsonNode)a!).ToArray()),
                ["env"] = new JsonArray("PATH=/bin:/usr/bin", "TERM=xterm"),
                ["cwd"] = "/",
                ["capabilities"] = new JsonObject
                {
                    ["bounding"] = Caps(),
                    ["effective"] = Caps(),
                    ["permitted"] = Caps(),
                },
                ["rlimits"] = new JsonArray(new JsonObject { ["type"] = "RLIMIT_NOFILE", ["hard"] = 1024, ["soft"] = 1024 }),
                ["noNewPrivileges"] = true,
            },
            ["root"] = new JsonObject { ["path"] = "rootfs" },
            ["hostname"] = hostname,
            ["mounts"] = new JsonArray(
                Mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
                Mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
                Mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
                Mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
                Mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
                Mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
                Mount("/run", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k")),
            ["linux"] = new JsonObject
            {
                ["namespaces"] = new JsonArray(
                    new JsonObject { ["type"] = "pid" },
                    new JsonObject { ["type"] = "ipc" },
                    new JsonObject { ["type"] = "uts" },
                    new JsonObject { ["type"] = "mount" },
                    new JsonObject { ["type"] = "network" }),
                ["maskedPaths"] = new JsonArray("/proc/kcore", "/proc/keys", "/sys/firmware"),
                ["readonlyPaths"] = new JsonArray("/proc/sys", "/proc/sysrq-trigger"),
            },
        };
        edit?.Invoke(spec);
        return Encoding.UTF8.GetBytes(spec.ToJsonString());
    }

    /// <summary>Creates (not starts) a container running args.</summary>
    public async Task<(string Id, uint Pid)> CreateAsync(string[] args, bool terminal = false, bool stdin = false, Action<JsonObject>? edit = null, string prefix = "c")
    {
        var id = NewContainer(prefix);
        var created = await Agent!.CreateContainerAsync(new CreateContainerRequest
        {
            ContainerId = id,
            OciSpecJson = ByteString.CopyFrom(Spec(args, terminal, edit: edit)),
            RootfsGuestPath = GuestRootfs(id),
            Terminal = terminal,
            Stdin = stdin,
            Stdout = true,
            Stderr = !terminal,
        });
        return (id, created.Pid);
    }

    /// <summary>Reads a stream to end of stream (empty data).</summary>
    public async Task<string> ReadAllAsync(string id, string execId = "", bool stderr = false)
    {
        var output = new MemoryStream();
        while (true)
        {
            var request = new ReadStreamRequest { ContainerId = id, ExecId = execId, Len = 65536 };
            var response = stderr ? await Agent!.ReadStderrAsync(request) : await Agent!.ReadStdoutAsync(request);
            if (response.Data.IsEmpty)
            {
                return Encoding.UTF8.GetString(output.ToArray());
            }

            response.Data.WriteTo(output);
        }
    }

    public string ConsoleTail(int lines = 40)
    {
        try
        {
            return string.Join('\n', File.ReadAllLines(ConsoleLog).TakeLast(lines));
        }
        catch (IOException e)
        {
            return $"(console log unreadable: {e.Message})";
        }
    }

    private static JsonArray Caps() => new("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE");

    private static JsonObject Mount(string destination, string type, string source, params string[] options) => new()
    {
        ["destination"] = destination,
        ["type"] = type,
        ["source"] = source,
        ["options"] = new JsonArray(options.Select(o => (JsonNode)o!).ToArray()),
    };
}
