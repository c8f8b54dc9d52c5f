using System.Text.Json;

namespace ShimV2.Shim.Sandbox;

/// <summary>vCPUs and memory: what a VM has, or what a container's limits ask of it.</summary>
public readonly record struct SandboxSize(int Vcpus, int MemoryMiB)
{
    private const long MiB = 1024 * 1024;

    public static SandboxSize operator +(SandboxSize a, SandboxSize b) => new(a.Vcpus + b.Vcpus, a.MemoryMiB + b.MemoryMiB);

    /// <summary>
    /// What a container's limits add to its pod's VM, as Kata sizes it: ceil(cpu quota / period) vCPUs and the
    /// memory limit. A container without limits adds nothing (it shares the VM's boot size).
    /// </summary>
    /// <param name="resourcesJson">An OCI LinuxResources object (linux.resources, or an Update's resources).</param>
    public static SandboxSize FromLinuxResources(JsonElement resources)
    {
        if (resources.ValueKind != JsonValueKind.Object)
        {
            return default;
        }

        var vcpus = 0;
        if (resources.TryGetProperty("cpu", out var cpu) && cpu.ValueKind == JsonValueKind.Object
            && Number(cpu, "quota") is > 0 and var quota && Number(cpu, "period") is > 0 and var period)
        {
            vcpus = (int)Math.Min(1024, (quota + period - 1) / period);
        }

        var memory = 0;
        if (resources.TryGetProperty("memory", out var mem) && mem.ValueKind == JsonValueKind.Object
            && Number(mem, "limit") is > 0 and var limit)
        {
            memory = (int)Math.Min(int.MaxValue, (limit + MiB - 1) / MiB);
        }

        return new SandboxSize(vcpus, memory);
    }

    /// <summary>The needs of a whole OCI spec (its linux.resources).</summary>
    public static SandboxSize FromSpec(byte[] specJson)
    {
        using var doc = JsonDocument.Parse(specJson);
        return doc.RootElement.TryGetProperty("linux", out var linux) && linux.ValueKind == JsonValueKind.Object
            && linux.TryGetProperty("resources", out var resources)
            ? FromLinuxResources(resources)
            : default;
    }

    /// <summary>The needs of an Update's LinuxResources JSON.</summary>
    /// <exception cref="FormatException">Not JSON.</exception>
    public static SandboxSize FromResources(ReadOnlySpan<byte> resourcesJson)
    {
        try
        {
            var reader = new Utf8JsonReader(resourcesJson);
            using var doc = JsonDocument.ParseValue(ref reader);
            return FromLinuxResources(doc.RootElement);
        }
        catch (JsonException e)
        {
            throw new FormatException($"invalid LinuxResources JSON: {e.Message}", e);
        }
    }

    private static long? Number(JsonElement parent, string name) =>
        parent.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : null;
}
