using System.Text.Json;

namespace ShimV2.Hypervisor;

/// <summary>migrate-set-capabilities with one capability, e.g. x-ignore-shared (RAM in a shared file backend is
/// neither sent nor expected: a VM template's memory file stays where it is).</summary>
public sealed record MigrateSetCapability(string Capability, bool State) : QmpCommand<QmpEmpty>
{
    public const string IgnoreShared = "x-ignore-shared";

    public override string Name => "migrate-set-capabilities";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer)
    {
        writer.WriteStartArray("capabilities");
        writer.WriteStartObject();
        writer.WriteString("capability", Capability);
        writer.WriteBoolean("state", State);
        writer.WriteEndObject();
        writer.WriteEndArray();
    }

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>migrate: sends the VM's state to <see cref="Uri"/> (unix:PATH here: no helper process, so QEMU's
/// seccomp filter may deny spawning); returns at once, the MIGRATION events and query-migrate tell the end.</summary>
public sealed record Migrate(string Uri) : QmpCommand<QmpEmpty>
{
    public override string Name => "migrate";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer) => writer.WriteString("uri", Uri);

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>migrate-incoming: a QEMU started with -incoming defer takes its state from <see cref="Uri"/>.</summary>
public sealed record MigrateIncoming(string Uri) : QmpCommand<QmpEmpty>
{
    public override string Name => "migrate-incoming";

    internal override bool HasArguments => true;

    internal override void WriteArguments(Utf8JsonWriter writer) => writer.WriteString("uri", Uri);

    internal override QmpEmpty ReadResult(JsonElement result) => Empty(result);
}

/// <summary>query-migrate: the status (none, setup, active, completed, failed, ...) and, when failed, why.</summary>
public sealed record QueryMigrate : QmpCommand<QmpMigrationInfo>
{
    public override string Name => "query-migrate";

    /// <exception cref="HypervisorException">The return value is not an object, or a member is not a string.</exception>
    internal override QmpMigrationInfo ReadResult(JsonElement result)
    {
        if (result.ValueKind != JsonValueKind.Object)
        {
            throw new HypervisorException($"qmp query-migrate: unexpected return value: {result.ValueKind}, not an object");
        }

        return new(Text(result, "status") ?? "none", Text(result, "error-desc"));
    }

    private static string? Text(JsonElement result, string name) => !result.TryGetProperty(name, out var value) ? null
        : value.ValueKind == JsonValueKind.String ? value.GetString()
        : throw new HypervisorException($"qmp query-migrate: \"{name}\" is {value.ValueKind}, not a string");
}

/// <summary>What query-migrate says.</summary>
public sealed record QmpMigrationInfo(string Status, string? Error)
{
    public bool Completed => Status == "completed";

    public bool Ended => Status is "completed" or "failed" or "cancelled";
}
