using System.Text.Json;
using System.Text.Json.Serialization;

namespace ShimV2.Hypervisor;

/// <summary>The greeting QEMU sends when a QMP client connects.</summary>
public sealed record QmpGreeting(QmpVersion Version, IReadOnlyList<string> Capabilities);

public sealed record QmpVersion(QmpVersionTriple Qemu, string Package)
{
    public override string ToString() => $"{Qemu.Major}.{Qemu.Minor}.{Qemu.Micro} ({Package})";
}

public sealed record QmpVersionTriple(int Major, int Minor, int Micro);

/// <summary>The result of commands that return <c>{}</c>.</summary>
public sealed record QmpEmpty
{
    public static readonly QmpEmpty Instance = new();
}

/// <summary>query-status. <see cref="Status"/> is QEMU's RunState ("running", "paused", "shutdown", "inmigrate", ...).</summary>
public sealed record QmpStatusInfo(bool Running, string Status);

/// <summary>CpuInstanceProperties: where a vCPU sits (absent members are null).</summary>
public sealed record QmpCpuInstanceProperties(
    int? NodeId = null,
    int? SocketId = null,
    int? DieId = null,
    int? ClusterId = null,
    int? CoreId = null,
    int? ThreadId = null);

/// <summary>query-hotpluggable-cpus entry; <see cref="QomPath"/> is null for a slot that holds no CPU yet.</summary>
public sealed record QmpHotpluggableCpu(string Type, int VcpusCount, QmpCpuInstanceProperties Props, string? QomPath);

/// <summary>query-cpus-fast entry.</summary>
public sealed record QmpCpuInfoFast(int CpuIndex, string QomPath, long ThreadId, QmpCpuInstanceProperties? Props, string Target);

/// <summary>query-memory-devices entry: <see cref="Type"/> is "dimm", "nvdimm", "virtio-mem", ...; <see cref="Data"/>
/// holds the members DIMM-like devices share (absent ones are null).</summary>
public sealed record QmpMemoryDevice(string Type, QmpMemoryDeviceData? Data);

/// <summary>PCDIMMDeviceInfo, also read for other memory device kinds (members they lack stay null).</summary>
public sealed record QmpMemoryDeviceData(
    string? Id = null,
    long? Addr = null,
    long? Size = null,
    int? Slot = null,
    int? Node = null,
    string? Memdev = null,
    bool? Hotplugged = null,
    bool? Hotpluggable = null);

/// <summary>query-memory-size-summary, in bytes. <see cref="PluggedMemory"/> is null when the machine cannot hotplug memory.</summary>
public sealed record QmpMemorySizeSummary(long BaseMemory, long? PluggedMemory);

/// <summary>An asynchronous QMP event, e.g. SHUTDOWN, STOP, RESUME. <see cref="Data"/> is undefined when the event has none.</summary>
public sealed record QmpEvent(string Name, JsonElement Data, DateTimeOffset Timestamp)
{
    public bool HasData => Data.ValueKind != JsonValueKind.Undefined;
}

/// <summary>Names of events QEMU emits that matter to a VM's lifecycle.</summary>
public static class QmpEventNames
{
    public const string Shutdown = "SHUTDOWN";
    public const string Powerdown = "POWERDOWN";
    public const string Reset = "RESET";
    public const string Stop = "STOP";
    public const string Resume = "RESUME";
    public const string GuestPanicked = "GUEST_PANICKED";
    public const string DeviceDeleted = "DEVICE_DELETED";
}

internal sealed record QmpGreetingMessage([property: JsonPropertyName("QMP")] QmpGreetingBody Qmp);

internal sealed record QmpGreetingBody(QmpVersion Version, IReadOnlyList<string> Capabilities);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.KebabCaseLower)]
[JsonSerializable(typeof(QmpGreetingMessage))]
[JsonSerializable(typeof(QmpStatusInfo))]
[JsonSerializable(typeof(QmpHotpluggableCpu[]))]
[JsonSerializable(typeof(QmpCpuInfoFast[]))]
[JsonSerializable(typeof(QmpCpuInstanceProperties))]
[JsonSerializable(typeof(QmpMemoryDevice[]))]
[JsonSerializable(typeof(QmpMemorySizeSummary))]
internal sealed partial class QmpJsonContext : JsonSerializerContext;
