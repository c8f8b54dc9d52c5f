using System.Text.Json;
using System.Text.Json.Serialization;

namespace ShimV2.GuestAgent.Oci;

// The parts of the OCI runtime spec (config.json) the agent honours. Unknown members are ignored.
#pragma warning disable CA2227 // Collection properties are settable: they are deserialized DTOs.
#pragma warning disable CA1819 // Arrays in DTOs.

internal sealed class OciSpec
{
    public string? OciVersion { get; set; }

    public OciProcess? Process { get; set; }

    public OciRoot? Root { get; set; }

    public string? Hostname { get; set; }

    public string? Domainname { get; set; }

    public List<OciMount>? Mounts { get; set; }

    public OciLinux? Linux { get; set; }

    public Dictionary<string, string>? Annotations { get; set; }
}

internal sealed class OciRoot
{
    public string? Path { get; set; }

    public bool Readonly { get; set; }
}

internal sealed class OciProcess
{
    public bool Terminal { get; set; }

    public OciBox? ConsoleSize { get; set; }

    public OciUser? User { get; set; }

    public List<string>? Args { get; set; }

    public string? CommandLine { get; set; }

    public List<string>? Env { get; set; }

    public string? Cwd { get; set; }

    public OciCapabilities? Capabilities { get; set; }

    public List<OciRlimit>? Rlimits { get; set; }

    public bool NoNewPrivileges { get; set; }

    public string? ApparmorProfile { get; set; }

    public int? OomScoreAdj { get; set; }

    public string? SelinuxLabel { get; set; }
}

internal sealed class OciBox
{
    public uint Height { get; set; }

    public uint Width { get; set; }
}

internal sealed class OciUser
{
    public uint Uid { get; set; }

    public uint Gid { get; set; }

    public uint? Umask { get; set; }

    public List<uint>? AdditionalGids { get; set; }

    public string? Username { get; set; }
}

internal sealed class OciCapabilities
{
    public List<string>? Bounding { get; set; }

    public List<string>? Effective { get; set; }

    public List<string>? Inheritable { get; set; }

    public List<string>? Permitted { get; set; }

    public List<string>? Ambient { get; set; }
}

internal sealed class OciRlimit
{
    public string Type { get; set; } = "";

    public ulong Hard { get; set; }

    public ulong Soft { get; set; }
}

internal sealed class OciMount
{
    public string Destination { get; set; } = "";

    public string? Type { get; set; }

    public string? Source { get; set; }

    public List<string>? Options { get; set; }
}

internal sealed class OciLinux
{
    public List<OciNamespace>? Namespaces { get; set; }

    public OciLinuxResources? Resources { get; set; }

    public string? CgroupsPath { get; set; }

    public Dictionary<string, string>? Sysctl { get; set; }

    public List<string>? MaskedPaths { get; set; }

    public List<string>? ReadonlyPaths { get; set; }

    public string? RootfsPropagation { get; set; }

    public List<OciDevice>? Devices { get; set; }

    public List<JsonElement>? UidMappings { get; set; }

    public List<JsonElement>? GidMappings { get; set; }

    public OciSeccomp? Seccomp { get; set; }

    public string? MountLabel { get; set; }
}

/// <summary>linux.seccomp: compiled to a BPF filter by Seccomp/SeccompCompiler.</summary>
internal sealed class OciSeccomp
{
    public string? DefaultAction { get; set; }

    public uint? DefaultErrnoRet { get; set; }

    public List<string>? Architectures { get; set; }

    public List<string>? Flags { get; set; }

    public string? ListenerPath { get; set; }

    public string? ListenerMetadata { get; set; }

    public List<OciSyscall>? Syscalls { get; set; }
}

internal sealed class OciSyscall
{
    public List<string>? Names { get; set; }

    public string? Action { get; set; }

    public uint? ErrnoRet { get; set; }

    public List<OciSyscallArg>? Args { get; set; }
}

internal sealed class OciSyscallArg
{
    public uint Index { get; set; }

    public ulong Value { get; set; }

    public ulong ValueTwo { get; set; }

    public string? Op { get; set; }
}

internal sealed class OciNamespace
{
    public string Type { get; set; } = "";

    public string? Path { get; set; }
}

internal sealed class OciDevice
{
    public string Path { get; set; } = "";

    public string? Type { get; set; }

    public long Major { get; set; }

    public long Minor { get; set; }

    public uint? FileMode { get; set; }

    public uint? Uid { get; set; }

    public uint? Gid { get; set; }
}

internal sealed class OciLinuxResources
{
    public OciMemory? Memory { get; set; }

    public OciCpu? Cpu { get; set; }

    public OciPids? Pids { get; set; }

    [JsonPropertyName("blockIO")]
    public OciBlockIo? BlockIo { get; set; }

    public List<OciHugepageLimit>? HugepageLimits { get; set; }

    public Dictionary<string, string>? Unified { get; set; }

    public List<OciDeviceCgroup>? Devices { get; set; }
}

/// <summary>A device cgroup rule: which device nodes the container may use (the last matching rule wins).</summary>
internal sealed class OciDeviceCgroup
{
    public bool Allow { get; set; }

    public string? Type { get; set; }

    public long? Major { get; set; }

    public long? Minor { get; set; }

    public string? Access { get; set; }

    /// <summary>A rule for every device ("a", any major and minor, read, write and mknod).</summary>
    public bool MatchesAll => Type is null or "" or "a" && Major is null or -1 && Minor is null or -1 && (Access is null or "" || Access.Contains('r', StringComparison.Ordinal) && Access.Contains('w', StringComparison.Ordinal));
}

internal sealed class OciMemory
{
    public long? Limit { get; set; }

    public long? Reservation { get; set; }

    public long? Swap { get; set; }

    public ulong? Swappiness { get; set; }

    public bool? DisableOomKiller { get; set; }
}

internal sealed class OciCpu
{
    public ulong? Shares { get; set; }

    public long? Quota { get; set; }

    public ulong? Period { get; set; }

    public string? Cpus { get; set; }

    public string? Mems { get; set; }

    public bool? Idle { get; set; }
}

internal sealed class OciPids
{
    public long Limit { get; set; }
}

internal sealed class OciBlockIo
{
    public ushort? Weight { get; set; }
}

internal sealed class OciHugepageLimit
{
    public string PageSize { get; set; } = "";

    public ulong Limit { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    PropertyNameCaseInsensitive = true,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    NumberHandling = JsonNumberHandling.AllowReadingFromString)]
[JsonSerializable(typeof(OciSpec))]
[JsonSerializable(typeof(OciProcess))]
[JsonSerializable(typeof(OciLinuxResources))]
[JsonSerializable(typeof(OciSeccomp))]
internal sealed partial class OciJsonContext : JsonSerializerContext
{
}

/// <summary>Parses OCI JSON; malformed input becomes an <see cref="AgentException"/> (InvalidArgument).</summary>
internal static class OciJson
{
    public static OciSpec ParseSpec(ReadOnlySpan<byte> json) => Parse(json, OciJsonContext.Default.OciSpec, "OCI spec");

    public static OciProcess ParseProcess(ReadOnlySpan<byte> json) => Parse(json, OciJsonContext.Default.OciProcess, "OCI process");

    public static OciLinuxResources ParseResources(ReadOnlySpan<byte> json) =>
        Parse(json, OciJsonContext.Default.OciLinuxResources, "OCI LinuxResources");

    private static T Parse<T>(ReadOnlySpan<byte> json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info, string what)
        where T : class
    {
        if (json.IsEmpty)
        {
            throw AgentException.InvalidArgument($"{what} is empty");
        }

        try
        {
            return JsonSerializer.Deserialize(json, info) ?? throw AgentException.InvalidArgument($"{what} is null");
        }
        catch (JsonException e)
        {
            throw AgentException.InvalidArgument($"{what} is not valid JSON: {e.Message}");
        }
    }
}
