using System.Text.Json;
using System.Text.Json.Nodes;

namespace ShimV2.Hypervisor;

/// <summary>A QMP command: its wire name, its arguments and how to read its "return" value.</summary>
public abstract record QmpCommand<TResult>
{
    /// <summary>The name sent as "execute".</summary>
    public abstract string Name { get; }

    /// <summary>Whether the command sends an "arguments" object.</summary>
    internal virtual bool HasArguments => false;

    /// <summary>Writes the members of the "arguments" object (the object itself is already open).</summary>
    internal virtual void WriteArguments(Utf8JsonWriter writer)
    {
    }

    internal abstract TResult ReadResult(JsonElement result);

    /// <summary>Reads "{}" for commands that return nothing.</summary>
    protected static QmpEmpty Empty(JsonElement result) => QmpEmpty.Instance;

    /// <summary>Reads a return value; one of an unexpected shape is a <see cref="HypervisorException"/>.</summary>
    protected static T Read<T>(JsonElement result, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo)
    {
        try
        {
            return result.Deserialize(typeInfo) ?? throw new HypervisorException($"qmp {typeof(T).Name}: empty return value");
        }
        catch (JsonException e)
        {
            throw new HypervisorException($"qmp {typeof(T).Name}: unexpected return value: {e.Message}", e);
        }
    }

    /// <summary>Writes caller-supplied members, refusing ones that would shadow the command's own.</summary>
    protected static void WriteExtra(Utf8JsonWriter writer, JsonObject? properties, params string[] reserved)
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (properties is null)
        {
            return;
        }

        foreach (var (key, value) in properties)
        {
            if (Array.IndexOf(reserved, key) >= 0)
            {
                throw new ArgumentException($"property \"{key}\" is set by the command itself", nameof(properties));
            }

            writer.WritePropertyName(key);
            if (value is null)
            {
                writer.WriteNullValue();
            }
            else
            {
                value.WriteTo(writer);
            }
        }
    }
}

/// <summary>qmp_capabilities: leaves capabilities negotiation mode; must be the first command.</summary>
public sealed record QmpCapabilities(IReadOnlyList<string>? Enable = null) : QmpCommand<QmpEmpty>
{
    public override string Name => "qmp_capabilities";

    internal override bool HasArguments => Enable is { Count: > 0 };

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        writer.WriteStartArray("enable");
        foreach (var capability in Enable ?? [])
        {
            writer.WriteStringValue(capability);
        }

        writer.WriteEndArray();
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

public sealed record QueryStatus : QmpCommand<QmpStatusInfo>
{
    public override string Name => "query-status";

    internal override QmpStatusInfo ReadResult(JsonElement result) => Read(result, QmpJsonContext.Default.QmpStatusInfo);
}

/// <summary>stop: pauses all vCPUs (emits STOP).</summary>
public sealed record Stop : QmpCommand<QmpEmpty>
{
    public override string Name => "stop";

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>cont: resumes all vCPUs (emits RESUME).</summary>
public sealed record Cont : QmpCommand<QmpEmpty>
{
    public override string Name => "cont";

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>quit: QEMU exits at once (emits SHUTDOWN with reason host-qmp-quit; the reply may be lost).</summary>
public sealed record Quit : QmpCommand<QmpEmpty>
{
    public override string Name => "quit";

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>system_powerdown: asks the guest to power off through ACPI.</summary>
public sealed record SystemPowerdown : QmpCommand<QmpEmpty>
{
    public override string Name => "system_powerdown";

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>device_add: driver and id plus the driver's own properties, flat.</summary>
public sealed record DeviceAdd(string Driver, string Id, JsonObject? Properties = null) : QmpCommand<QmpEmpty>
{
    public override string Name => "device_add";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        writer.WriteString("driver", Driver);
        writer.WriteString("id", Id);
        WriteExtra(writer, Properties, "driver", "id");
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>device_del: requests removal; completion is the DEVICE_DELETED event.</summary>
public sealed record DeviceDel(string Id) : QmpCommand<QmpEmpty>
{
    public override string Name => "device_del";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer) => writer.WriteString("id", Id);

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>object-add: qom-type and id plus the type's properties, flat (QEMU 6.0+ form).</summary>
public sealed record ObjectAdd(string QomType, string Id, JsonObject? Properties = null) : QmpCommand<QmpEmpty>
{
    public override string Name => "object-add";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        writer.WriteString("qom-type", QomType);
        writer.WriteString("id", Id);
        WriteExtra(writer, Properties, "qom-type", "id");
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

public sealed record ObjectDel(string Id) : QmpCommand<QmpEmpty>
{
    public override string Name => "object-del";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer) => writer.WriteString("id", Id);

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

public sealed record QueryHotpluggableCpus : QmpCommand<IReadOnlyList<QmpHotpluggableCpu>>
{
    public override string Name => "query-hotpluggable-cpus";

    internal override IReadOnlyList<QmpHotpluggableCpu> ReadResult(JsonElement result) =>
        Read(result, QmpJsonContext.Default.QmpHotpluggableCpuArray);
}

public sealed record QueryCpusFast : QmpCommand<IReadOnlyList<QmpCpuInfoFast>>
{
    public override string Name => "query-cpus-fast";

    internal override IReadOnlyList<QmpCpuInfoFast> ReadResult(JsonElement result) =>
        Read(result, QmpJsonContext.Default.QmpCpuInfoFastArray);
}

/// <summary>device_add of a vCPU into a free slot from <see cref="QueryHotpluggableCpus"/>: the slot's driver
/// (<see cref="QmpHotpluggableCpu.Type"/>, e.g. max-x86_64-cpu) and its topology properties.</summary>
public sealed record CpuDeviceAdd(string Driver, string Id, QmpCpuInstanceProperties Props) : QmpCommand<QmpEmpty>
{
    public override string Name => "device_add";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteString("driver", Driver);
        writer.WriteString("id", Id);
        WriteOptional(writer, "node-id", Props.NodeId);
        WriteOptional(writer, "socket-id", Props.SocketId);
        WriteOptional(writer, "die-id", Props.DieId);
        WriteOptional(writer, "cluster-id", Props.ClusterId);
        WriteOptional(writer, "core-id", Props.CoreId);
        WriteOptional(writer, "thread-id", Props.ThreadId);
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);

    private static void WriteOptional(Utf8JsonWriter writer, string name, int? value)
    {
        if (value is { } v)
        {
            writer.WriteNumber(name, v);
        }
    }
}

/// <summary>object-add of a memory-backend-ram: the RAM behind one hot-plugged DIMM.</summary>
public sealed record MemoryBackendRamAdd(string Id, long SizeBytes) : QmpCommand<QmpEmpty>
{
    public override string Name => "object-add";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteString("qom-type", "memory-backend-ram");
        writer.WriteString("id", Id);
        writer.WriteNumber("size", SizeBytes);
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>object-add of a memory-backend-memfd with share=on: a hot-plugged DIMM's RAM when virtiofsd must reach
/// guest memory (sharedFs virtio-fs), like the boot RAM.</summary>
public sealed record MemoryBackendMemfdAdd(string Id, long SizeBytes) : QmpCommand<QmpEmpty>
{
    public override string Name => "object-add";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteString("qom-type", "memory-backend-memfd");
        writer.WriteString("id", Id);
        writer.WriteNumber("size", SizeBytes);
        writer.WriteBoolean("share", true);
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>device_add of a pc-dimm backed by the memory backend <paramref name="Memdev"/>; takes a free slot.</summary>
public sealed record PcDimmAdd(string Id, string Memdev) : QmpCommand<QmpEmpty>
{
    public override string Name => "device_add";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteString("driver", "pc-dimm");
        writer.WriteString("id", Id);
        writer.WriteString("memdev", Memdev);
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>query-memory-devices: the hot-pluggable memory devices (DIMMs and others) present.</summary>
public sealed record QueryMemoryDevices : QmpCommand<IReadOnlyList<QmpMemoryDevice>>
{
    public override string Name => "query-memory-devices";

    internal override IReadOnlyList<QmpMemoryDevice> ReadResult(JsonElement result) =>
        Read(result, QmpJsonContext.Default.QmpMemoryDeviceArray);
}

/// <summary>query-memory-size-summary: boot memory and what was plugged since.</summary>
public sealed record QueryMemorySizeSummary : QmpCommand<QmpMemorySizeSummary>
{
    public override string Name => "query-memory-size-summary";

    internal override QmpMemorySizeSummary ReadResult(JsonElement result) =>
        Read(result, QmpJsonContext.Default.QmpMemorySizeSummary);
}

/// <summary>Any command by name; the return value comes back as raw JSON.</summary>
public sealed record QmpRawCommand(string CommandName, JsonObject? Arguments = null) : QmpCommand<JsonElement>
{
    public override string Name => CommandName;

    internal override bool HasArguments => Arguments is not null;

    internal override void WriteArguments(Utf8JsonWriter writer) => WriteExtra(writer, Arguments);

    internal override JsonElement ReadResult(JsonElement result) => result.Clone();
}
