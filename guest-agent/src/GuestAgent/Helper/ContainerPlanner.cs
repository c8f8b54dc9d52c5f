using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.Oci;
using ShimV2.GuestAgent.Seccomp;

namespace ShimV2.GuestAgent.Helper;

/// <summary>What the planner needs to know about the guest.</summary>
internal sealed record PlannerContext
{
    /// <summary>cgroup v2 is mounted at /sys/fs/cgroup: "cgroup" mounts become cgroup2.</summary>
    public bool Cgroup2 { get; init; }

    /// <summary>
    /// Where the host share is mounted in the guest. The shim bind-mounts each bind source into the share
    /// (&lt;share&gt;/&lt;container-id&gt;/mounts/&lt;i&gt;-&lt;name&gt;) and rewrites the spec's source to that guest path;
    /// sources under the share are used as they are, other bind sources are skipped with a warning.
    /// </summary>
    public string? SharePath { get; init; }

    /// <summary>Use MS_MOVE + chroot instead of pivot_root (the helper falls back by itself on initramfs).</summary>
    public bool NoPivot { get; init; }

    /// <summary>The guest's device nodes bound into /dev (tests can point elsewhere).</summary>
    public string GuestDevDirectory { get; init; } = "/dev";

    /// <summary>
    /// The pod's sandbox container when the container being created is another container of the same pod: its
    /// spec's /proc/PID/ns paths then mean that sandbox's namespaces.
    /// </summary>
    public PodSandbox? Sandbox { get; init; }
}

/// <summary>The instructions for one process, and what the agent keeps from the decisions.</summary>
internal sealed class ProcessPlan
{
    public required HelperInstructions Instructions { get; init; }

    /// <summary>CLONE_NEW* flags of the namespaces the container owns or joined (its execs join them all).</summary>
    public uint NamespaceFlags { get; init; }

    /// <summary>The init is not PID 1 of a namespace of its own: when it exits, the rest of the container is killed (as runc's shim does).</summary>
    public bool SharesPidNamespace { get; init; }

    public required IReadOnlyList<string> Args { get; init; }

    public OciBox? ConsoleSize { get; init; }

    /// <summary>The container's seccomp filter: compiled once at create, applied to its execs too (as runc does).</summary>
    public SeccompFilter? Seccomp { get; init; }

    public List<string> Warnings { get; } = [];
}

/// <summary>
/// All container policy: reads the OCI spec and decides namespaces, mounts, devices, user, capabilities,
/// limits, hostname, environment; the helper only executes the resulting instructions.
/// </summary>
internal static class ContainerPlanner
{
    /// <summary>0755 (C# has no octal literals).</summary>
    public const uint DirectoryMode = 0b111_101_101;

    /// <summary>022, runc's default umask.</summary>
    public const uint DefaultUmask = 0b000_010_010;

    private static readonly string[] DefaultDevices = ["null", "zero", "full", "random", "urandom", "tty"];

    /// <summary>Namespaces an exec joins, in setns order (mount last: it changes what paths mean).</summary>
    private static readonly (uint Flag, string Name)[] JoinOrder =
    [
        (Libc.CLONE_NEWIPC, "ipc"),
        (Libc.CLONE_NEWUTS, "uts"),
        (Libc.CLONE_NEWNET, "net"),
        (Libc.CLONE_NEWPID, "pid"),
        (Libc.CLONE_NEWCGROUP, "cgroup"),
        (Libc.CLONE_NEWNS, "mnt"),
    ];

    public static ProcessPlan PlanCreate(OciSpec spec, string rootfs, bool terminal, string? consolePath, PlannerContext context)
    {
        var process = spec.Process ?? throw AgentException.InvalidArgument("the OCI spec has no process");
        if (!rootfs.StartsWith('/'))
        {
            throw AgentException.InvalidArgument($"rootfs path \"{rootfs}\" is not absolute");
        }

        var ins = new HelperInstructions().Mode(HelperMode.Create);
        var warnings = new List<string>();
        var (flags, joins) = Namespaces(spec, context.Sandbox, warnings);
        var joined = 0u;
        foreach (var (flag, path) in joins)
        {
            ins.SetNs(flag, path);
            joined |= flag;
        }

        ins.Unshare(flags);
        ins.Rootfs(rootfs);
        ins.RootPropagation(MountOptionParser.RootPropagation(spec.Linux?.RootfsPropagation));
        if (context.NoPivot)
        {
            ins.NoPivot();
        }

        var devMounted = Mounts(ins, spec, context, warnings);
        if (devMounted)
        {
            Devices(ins, spec, terminal ? consolePath : null, context, warnings);
        }

        if (!string.IsNullOrEmpty(spec.Hostname))
        {
            if ((flags & Libc.CLONE_NEWUTS) != 0)
            {
                ins.Hostname(spec.Hostname);
            }
            else
            {
                warnings.Add($"hostname \"{spec.Hostname}\" ignored: the container shares the sandbox's UTS namespace");
            }
        }

        if (!string.IsNullOrEmpty(spec.Domainname) && (flags & Libc.CLONE_NEWUTS) != 0)
        {
            ins.Domainname(spec.Domainname);
        }

        Sysctls(ins, spec);

        foreach (var path in spec.Linux?.MaskedPaths ?? [])
        {
            ins.Mask(Absolute(path));
        }

        foreach (var path in spec.Linux?.ReadonlyPaths ?? [])
        {
            ins.Readonly(Absolute(path));
        }

        if (spec.Root?.Readonly == true)
        {
            ins.RootReadonly();
        }

        var cwd = Cwd(process);
        if (cwd != "/")
        {
            ins.Mkdir(DirectoryMode, cwd);
        }

        var seccomp = spec.Linux?.Seccomp is { } profile ? SeccompCompiler.Compile(profile) : null;
        var plan = new ProcessPlan
        {
            Instructions = ins,
            NamespaceFlags = flags | joined,
            SharesPidNamespace = (flags & Libc.CLONE_NEWPID) == 0,
            Args = process.Args ?? [],
            ConsoleSize = process.ConsoleSize,
            Seccomp = seccomp,
        };
        plan.Warnings.AddRange(warnings);
        AddProcess(ins, process, terminal, init: true, passwdRoot: rootfs, seccomp, plan.Warnings);
        return plan;
    }

    /// <summary>An extra process in the namespaces of a running container's init.</summary>
    public static ProcessPlan PlanExec(int initPid, uint containerNamespaces, OciProcess process, bool terminal, SeccompFilter? seccomp = null)
    {
        var ins = new HelperInstructions().Mode(HelperMode.Exec);
        foreach (var (flag, name) in JoinOrder)
        {
            if ((containerNamespaces & flag) != 0)
            {
                ins.SetNs(flag, $"/proc/{initPid}/ns/{name}");
            }
        }

        var plan = new ProcessPlan
        {
            Instructions = ins,
            NamespaceFlags = containerNamespaces,
            Args = process.Args ?? [],
            ConsoleSize = process.ConsoleSize,
            Seccomp = seccomp,
        };
        AddProcess(ins, process, terminal, init: false, passwdRoot: $"/proc/{initPid}/root", seccomp, plan.Warnings);
        return plan;
    }

    /// <summary>
    /// The namespaces to create (CLONE_NEW* flags) and to join (flag, guest path). A path in a pod container's spec
    /// means the pod sandbox's namespace; host namespaces (no entry) are the VM's own.
    /// </summary>
    private static (uint Create, List<(uint Flag, string Path)> Join) Namespaces(OciSpec spec, PodSandbox? sandbox, List<string> warnings)
    {
        uint flags = Libc.CLONE_NEWNS;
        var joins = new List<(uint, string)>();
        var types = new HashSet<string>(StringComparer.Ordinal);
        foreach (var ns in spec.Linux?.Namespaces ?? [])
        {
            types.Add(ns.Type);
            switch (ns.Type)
            {
                case "mount":
                    break;
                case "pid":
                case "ipc":
                case "uts":
                    var (_, flag) = PodNamespaces.Joinable[ns.Type];
                    if (string.IsNullOrEmpty(ns.Path))
                    {
                        flags |= flag;
                    }
                    else if (JoinPodNamespace(ns.Type, ns.Path, sandbox, warnings) is { } join)
                    {
                        joins.Add(join);
                    }
                    else if (ns.Type == "pid")
                    {
                        // Never the VM's own PID namespace by accident: that is what a spec without one asks for.
                        flags |= flag;
                    }

                    break;
                case "cgroup":
                    flags |= string.IsNullOrEmpty(ns.Path) ? Libc.CLONE_NEWCGROUP : 0;
                    break;
                case "network":
                    // The VM's network is the pod's network: never a new, empty one.
                    break;
                case "user":
                    throw AgentException.InvalidArgument("user namespaces are not supported by the guest agent");
                case "time":
                    warnings.Add("time namespace ignored");
                    break;
                default:
                    throw AgentException.InvalidArgument($"unknown namespace type \"{ns.Type}\"");
            }
        }

        HostNamespaceWarnings(types, warnings);
        return (flags, joins);
    }

    /// <summary>The sandbox's namespace a /proc/PID/ns path stands for, or null (with a warning) when it is not one.</summary>
    private static (uint Flag, string Path)? JoinPodNamespace(string type, string path, PodSandbox? sandbox, List<string> warnings)
    {
        var (file, flag) = PodNamespaces.Joinable[type];
        if (sandbox != null && PodNamespaces.IsProcessNamespacePath(path, file))
        {
            return (flag, $"/proc/{sandbox.InitPid}/ns/{file}");
        }

        var instead = type == "pid" ? "the container gets a PID namespace of its own" : $"the container shares the VM's {type.ToUpperInvariant()} namespace";
        warnings.Add(sandbox == null
            ? $"{type} namespace path {path} names a namespace outside the VM (no pod sandbox container in this VM to stand for it): {instead}"
            : $"{type} namespace path {path} is not a /proc/<pid>/ns/{file} path of the pod's sandbox {sandbox.Id}: {instead}");
        return null;
    }

    /// <summary>hostPID, hostIPC and host networking cannot reach out of the VM: the VM's own namespaces stand in.</summary>
    private static void HostNamespaceWarnings(HashSet<string> types, List<string> warnings)
    {
        if (!types.Contains("pid"))
        {
            warnings.Add("no pid namespace in the spec (host PID): the container shares the VM's PID namespace, not the host's");
        }

        if (!types.Contains("ipc"))
        {
            warnings.Add("no ipc namespace in the spec (host IPC): the container shares the VM's IPC namespace, not the host's");
        }

        if (!types.Contains("network"))
        {
            warnings.Add("no network namespace in the spec (host network): the container has the VM's network, not the host's");
        }
    }

    /// <summary>The spec's sysctls, each checked against the namespaces the container has (runc's rule).</summary>
    private static void Sysctls(HelperInstructions ins, OciSpec spec)
    {
        var sysctls = spec.Linux?.Sysctl;
        if (sysctls is not { Count: > 0 })
        {
            return;
        }

        var types = (spec.Linux?.Namespaces ?? []).Select(n => n.Type).ToHashSet(StringComparer.Ordinal);
        foreach (var (key, value) in sysctls)
        {
            SysctlRules.Place(key, types);
            ins.Sysctl(key, value);
        }
    }

    /// <summary>Adds the spec's mounts; returns whether /dev is a mount of its own (then devices are populated).</summary>
    private static bool Mounts(HelperInstructions ins, OciSpec spec, PlannerContext context, List<string> warnings)
    {
        var devMounted = false;
        foreach (var m in spec.Mounts ?? [])
        {
            var destination = Absolute(m.Destination);
            var options = MountOptionParser.Parse(m.Options);
            var type = m.Type ?? "";
            if (type is "bind" or "rbind" || options.Bind)
            {
                var flags = options.Flags | Libc.MS_BIND | (type == "rbind" ? Libc.MS_REC : 0);
                var source = ResolveBindSource(m, context);
                if (source == null)
                {
                    if (destination == "/dev/shm")
                    {
                        ins.Mount(Libc.MS_NOSUID | Libc.MS_NOEXEC | Libc.MS_NODEV, 0, MountTargetKind.Directory, "shm", destination, "tmpfs", "mode=1777,size=65536k");
                    }
                    else
                    {
                        warnings.Add($"mount {m.Source} on {destination} skipped: the source is not shared with the guest");
                    }

                    continue;
                }

                ins.Mount(flags, options.Propagation, MountTargetKind.Auto, source, destination, "", "");
                continue;
            }

            switch (type)
            {
                case "cgroup":
                case "cgroup2":
                    if (!context.Cgroup2)
                    {
                        warnings.Add($"cgroup mount on {destination} skipped: the guest has no cgroup v2 hierarchy");
                        continue;
                    }

                    ins.Mount(options.Flags, options.Propagation, MountTargetKind.Directory, "cgroup2", destination, "cgroup2", "");
                    continue;
                case "":
                    throw AgentException.InvalidArgument($"mount on {destination} has no type");
                default:
                    if (destination == "/dev")
                    {
                        devMounted = true;
                    }

                    ins.Mount(options.Flags, options.Propagation, MountTargetKind.Directory, m.Source ?? type, destination, type, options.Data);
                    break;
            }
        }

        return devMounted;
    }

    private static string? ResolveBindSource(OciMount m, PlannerContext context)
    {
        var source = m.Source ?? "";
        if (context.SharePath != null && source.StartsWith(context.SharePath.TrimEnd('/') + "/", StringComparison.Ordinal) && Path.Exists(source))
        {
            return source;
        }

        return null;
    }

    private static void Devices(HelperInstructions ins, OciSpec spec, string? consolePath, PlannerContext context, List<string> warnings)
    {
        foreach (var name in DefaultDevices)
        {
            var guest = Path.Combine(context.GuestDevDirectory, name);
            if (File.Exists(guest))
            {
                ins.Mount(Libc.MS_BIND, 0, MountTargetKind.File, guest, "/dev/" + name, "", "");
            }
        }

        var bound = new HashSet<string>(DefaultDevices.Select(d => "/dev/" + d), StringComparer.Ordinal);
        var allDevices = AllDevicesAllowed(spec);
        var missing = new List<string>();
        foreach (var device in spec.Linux?.Devices ?? [])
        {
            var path = Absolute(device.Path);
            if (!bound.Add(path))
            {
                continue;
            }

            var guest = GuestDevicePath(path, context);
            if (File.Exists(guest))
            {
                ins.Mount(Libc.MS_BIND, 0, MountTargetKind.File, guest, path, "", "");
            }
            else
            {
                missing.Add(path);
            }
        }

        if (allDevices)
        {
            // A privileged container (every device allowed): runc gives it the host's /dev, here the VM's. The
            // spec's device list names the host's nodes, which the guest mostly does not have: no warning for those.
            foreach (var (guest, target) in GuestDevices(context))
            {
                if (bound.Add(target))
                {
                    ins.Mount(Libc.MS_BIND, 0, MountTargetKind.File, guest, target, "", "");
                }
            }
        }
        else if (missing.Count > 0)
        {
            warnings.Add($"device{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)} skipped: the guest has no such node");
        }

        if (consolePath != null)
        {
            ins.Mount(Libc.MS_BIND, 0, MountTargetKind.File, consolePath, "/dev/console", "", "");
        }

        ins.Symlink("/proc/self/fd", "/dev/fd");
        ins.Symlink("/proc/self/fd/0", "/dev/stdin");
        ins.Symlink("/proc/self/fd/1", "/dev/stdout");
        ins.Symlink("/proc/self/fd/2", "/dev/stderr");
        ins.Symlink("pts/ptmx", "/dev/ptmx");
        if ((spec.Mounts ?? []).Any(m => m.Type == "proc" && Absolute(m.Destination) == "/proc"))
        {
            ins.Symlink("/proc/kcore", "/dev/core");
        }
    }

    /// <summary>Whether the spec's device cgroup rules end allowing every device (CRI's privileged containers).</summary>
    internal static bool AllDevicesAllowed(OciSpec spec) =>
        spec.Linux?.Resources?.Devices?.LastOrDefault(r => r.MatchesAll) is { Allow: true };

    private static string GuestDevicePath(string path, PlannerContext context) =>
        path.StartsWith("/dev/", StringComparison.Ordinal) ? Path.Combine(context.GuestDevDirectory, path["/dev/".Length..]) : path;

    /// <summary>Subtrees and nodes of the guest's /dev a privileged container does not get: filesystems of their own
    /// (the container mounts its own), the console, and the agent's channel to the host.</summary>
    private static readonly string[] GuestOnlyDevices = ["pts", "shm", "mqueue", "hugepages", "virtio-ports", "console", "ptmx", "vport"];

    /// <summary>The guest's device nodes (not symlinks or directories) as (guest path, path in the container).</summary>
    private static IEnumerable<(string Guest, string Target)> GuestDevices(PlannerContext context)
    {
        var root = context.GuestDevDirectory;
        if (!Directory.Exists(root))
        {
            yield break;
        }

        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint, IgnoreInaccessible = true };
        foreach (var guest in Directory.EnumerateFiles(root, "*", options).Order(StringComparer.Ordinal))
        {
            var relative = Path.GetRelativePath(root, guest);
            var first = relative.Split('/')[0];
            if (GuestOnlyDevices.Any(g => first == g || (g == "vport" && first.StartsWith(g, StringComparison.Ordinal))))
            {
                continue;
            }

            yield return (guest, "/dev/" + relative);
        }
    }

    private static void AddProcess(
        HelperInstructions ins, OciProcess process, bool terminal, bool init, string passwdRoot, SeccompFilter? seccomp, List<string> warnings)
    {
        if (process.Args is not { Count: > 0 } args || string.IsNullOrEmpty(args[0]))
        {
            throw AgentException.InvalidArgument("process args must not be empty");
        }

        var user = process.User ?? new OciUser();
        var env = (process.Env ?? []).ToList();
        if (!env.Any(e => e.StartsWith("HOME=", StringComparison.Ordinal)))
        {
            env.Add("HOME=" + HomeOf(passwdRoot, user.Uid));
        }

        foreach (var e in env)
        {
            if (!e.Contains('=', StringComparison.Ordinal))
            {
                throw AgentException.InvalidArgument($"environment entry \"{e}\" has no '='");
            }
        }

        foreach (var rlimit in process.Rlimits ?? [])
        {
            ins.Rlimit(RlimitNames.Resource(rlimit.Type), rlimit.Soft, rlimit.Hard);
        }

        if (process.OomScoreAdj is { } oom)
        {
            ins.OomScoreAdj(oom);
        }

        if (terminal)
        {
            ins.Terminal();
        }
        else if (init)
        {
            ins.Setsid();
        }

        ins.Cwd(Cwd(process));
        ins.Umask(user.Umask ?? DefaultUmask);
        ins.User(user.Uid, user.Gid, user.AdditionalGids ?? []);
        if (process.Capabilities is { } caps)
        {
            var unknown = new List<string>();
            ins.Caps(
                CapabilityNames.Mask(caps.Bounding, unknown),
                CapabilityNames.Mask(caps.Effective, unknown),
                CapabilityNames.Mask(caps.Permitted, unknown),
                CapabilityNames.Mask(caps.Inheritable, unknown),
                CapabilityNames.Mask(caps.Ambient, unknown));
            if (unknown.Count > 0)
            {
                warnings.Add($"unknown capabilities ignored: {string.Join(", ", unknown)}");
            }
        }

        if (process.NoNewPrivileges)
        {
            ins.NoNewPrivs();
        }

        // runc would apply these on exec; the guest loads no LSM policy, so say so rather than ignore them silently.
        if (!string.IsNullOrEmpty(process.ApparmorProfile))
        {
            warnings.Add($"AppArmor profile \"{process.ApparmorProfile}\" not applied: the guest loads no AppArmor policy (the VM is the isolation boundary)");
        }

        if (!string.IsNullOrEmpty(process.SelinuxLabel))
        {
            warnings.Add($"SELinux label \"{process.SelinuxLabel}\" not applied: the guest loads no SELinux policy (the VM is the isolation boundary)");
        }

        if (seccomp != null)
        {
            ins.Seccomp(seccomp.Flags, seccomp.Program);
        }

        foreach (var arg in args)
        {
            ins.Arg(arg);
        }

        foreach (var e in env)
        {
            ins.Env(e);
        }
    }

    private static string Cwd(OciProcess process)
    {
        var cwd = string.IsNullOrEmpty(process.Cwd) ? "/" : process.Cwd;
        return cwd.StartsWith('/') ? cwd : throw AgentException.InvalidArgument($"cwd \"{cwd}\" is not an absolute path");
    }

    private static string Absolute(string path) => path.StartsWith('/') ? path : "/" + path;

    /// <summary>The user's home from the container's /etc/passwd, else "/" (as runc does).</summary>
    internal static string HomeOf(string root, uint uid)
    {
        try
        {
            var passwd = Path.Combine(root, "etc/passwd");
            if (!File.Exists(passwd))
            {
                return "/";
            }

            foreach (var line in File.ReadLines(passwd))
            {
                var fields = line.Split(':');
                if (fields.Length >= 6 && uint.TryParse(fields[2], out var id) && id == uid && fields[5].Length > 0)
                {
                    return fields[5];
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return "/";
    }
}
