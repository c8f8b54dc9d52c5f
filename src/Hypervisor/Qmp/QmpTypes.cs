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

internal sealed record QmpTimestamp(long Seconds, long Microseconds);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.KebabCaseLower)]
[JsonSerializable(typeof(QmpGreetingMessage))]
[JsonSerializable(typeof(QmpStatusInfo))]
[JsonSerializable(typeof(QmpTimestamp))]
[JsonSerializable(typeof(QmpHotpluggableCpu[]))]
[JsonSerializable(typeof(QmpCpuInfoFast[]))]
[JsonSerializable(typeof(QmpCpuInstanceProperties))]
internal sealed partial class QmpJsonContext : JsonSerializerContext;
