using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Oci;

/// <summary>Capability names to bit numbers (linux/capability.h).</summary>
internal static class CapabilityNames
{
    private static readonly string[] Names =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];

    private static readonly Dictionary<string, int> ByName = Names.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i, StringComparer.OrdinalIgnoreCase);

    /// <summary>The bit mask of the named capabilities; unknown names are returned in unknown.</summary>
    public static ulong Mask(IEnumerable<string>? names, List<string> unknown)
    {
        ulong mask = 0;
        foreach (var name in names ?? [])
        {
            var key = name.StartsWith("CAP_", StringComparison.OrdinalIgnoreCase) ? name : "CAP_" + name;
            if (ByName.TryGetValue(key, out var bit))
            {
                mask |= 1UL << bit;
            }
            else if (!unknown.Contains(name))
            {
                unknown.Add(name);
            }
        }

        return mask;
    }
}

/// <summary>RLIMIT_* names to resource numbers (asm-generic/resource.h).</summary>
internal static class RlimitNames
{
    private static readonly Dictionary<string, uint> ByName = new(StringComparer.Ordinal)
    {
        ["RLIMIT_CPU"] = 0,
        ["RLIMIT_FSIZE"] = 1,
        ["RLIMIT_DATA"] = 2,
        ["RLIMIT_STACK"] = 3,
        ["RLIMIT_CORE"] = 4,
        ["RLIMIT_RSS"] = 5,
        ["RLIMIT_NPROC"] = 6,
        ["RLIMIT_NOFILE"] = 7,
        ["RLIMIT_MEMLOCK"] = 8,
        ["RLIMIT_AS"] = 9,
        ["RLIMIT_LOCKS"] = 10,
        ["RLIMIT_SIGPENDING"] = 11,
        ["RLIMIT_MSGQUEUE"] = 12,
        ["RLIMIT_NICE"] = 13,
        ["RLIMIT_RTPRIO"] = 14,
        ["RLIMIT_RTTIME"] = 15,
    };

    public static uint Resource(string name) =>
        ByName.TryGetValue(name, out var r) ? r : throw AgentException.InvalidArgument($"unknown rlimit type \"{name}\"");
}

/// <summary>A mount's options split as mount(8) does: flags, propagation flags, and filesystem data.</summary>
internal readonly record struct ParsedMountOptions(ulong Flags, ulong Propagation, string Data, bool Bind);

internal static class MountOptionParser
{
    private static readonly Dictionary<string, (bool Clear, ulong Flag)> Flags = new(StringComparer.Ordinal)
    {
        ["defaults"] = (false, 0),
        ["ro"] = (false, Libc.MS_RDONLY),
        ["rro"] = (false, Libc.MS_RDONLY),
        ["rw"] = (true, Libc.MS_RDONLY),
        ["rrw"] = (true, Libc.MS_RDONLY),
        ["nosuid"] = (false, Libc.MS_NOSUID),
        ["suid"] = (true, Libc.MS_NOSUID),
        ["nodev"] = (false, Libc.MS_NODEV),
        ["dev"] = (true, Libc.MS_NODEV),
        ["noexec"] = (false, Libc.MS_NOEXEC),
        ["exec"] = (true, Libc.MS_NOEXEC),
        ["sync"] = (false, Libc.MS_SYNCHRONOUS),
        ["async"] = (true, Libc.MS_SYNCHRONOUS),
        ["dirsync"] = (false, Libc.MS_DIRSYNC),
        ["mand"] = (false, Libc.MS_MANDLOCK),
        ["nomand"] = (true, Libc.MS_MANDLOCK),
        ["atime"] = (true, Libc.MS_NOATIME),
        ["noatime"] = (false, Libc.MS_NOATIME),
        ["diratime"] = (true, Libc.MS_NODIRATIME),
        ["nodiratime"] = (false, Libc.MS_NODIRATIME),
        ["relatime"] = (false, Libc.MS_RELATIME),
        ["norelatime"] = (true, Libc.MS_RELATIME),
        ["strictatime"] = (false, Libc.MS_STRICTATIME),
        ["nostrictatime"] = (true, Libc.MS_STRICTATIME),
        ["lazytime"] = (false, Libc.MS_LAZYTIME),
        ["nolazytime"] = (true, Libc.MS_LAZYTIME),
        ["nosymfollow"] = (false, Libc.MS_NOSYMFOLLOW),
        ["symfollow"] = (true, Libc.MS_NOSYMFOLLOW),
        ["bind"] = (false, Libc.MS_BIND),
        ["rbind"] = (false, Libc.MS_BIND | Libc.MS_REC),
        ["remount"] = (false, Libc.MS_REMOUNT),
    };

    private static readonly Dictionary<string, ulong> Propagations = new(StringComparer.Ordinal)
    {
        ["private"] = Libc.MS_PRIVATE,
        ["rprivate"] = Libc.MS_PRIVATE | Libc.MS_REC,
        ["shared"] = Libc.MS_SHARED,
        ["rshared"] = Libc.MS_SHARED | Libc.MS_REC,
        ["slave"] = Libc.MS_SLAVE,
        ["rslave"] = Libc.MS_SLAVE | Libc.MS_REC,
        ["unbindable"] = Libc.MS_UNBINDABLE,
        ["runbindable"] = Libc.MS_UNBINDABLE | Libc.MS_REC,
    };

    /// <summary>Options the runtime handles itself and the kernel must not see.</summary>
    private static readonly HashSet<string> Ignored = new(StringComparer.Ordinal) { "tmpcopyup", "idmap", "ridmap", "_netdev", "auto", "noauto", "user", "nouser" };

    public static ParsedMountOptions Parse(IEnumerable<string>? options)
    {
        ulong flags = 0;
        ulong propagation = 0;
        var data = new List<string>();
        foreach (var option in options ?? [])
        {
            if (Flags.TryGetValue(option, out var f))
            {
                flags = f.Clear ? flags & ~f.Flag : flags | f.Flag;
            }
            else if (Propagations.TryGetValue(option, out var p))
            {
                propagation = p;
            }
            else if (!Ignored.Contains(option) && option.Length > 0)
            {
                data.Add(option);
            }
        }

        return new ParsedMountOptions(flags, propagation, string.Join(',', data), (flags & Libc.MS_BIND) != 0);
    }

    /// <summary>rootfsPropagation to the flags applied to "/" in the container's mount namespace.</summary>
    public static ulong RootPropagation(string? value) => value switch
    {
        null or "" => Libc.MS_SLAVE | Libc.MS_REC,
        _ when Propagations.TryGetValue(value, out var p) => p | Libc.MS_REC,
        _ => throw AgentException.InvalidArgument($"unknown rootfsPropagation \"{value}\""),
    };
}
