using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ShimV2.Hypervisor.Templates;

/// <summary>
/// Names one VM template: everything that shapes the saved guest. A template restores only into a QEMU with the
/// same binary, machine, devices and memory layout, and holds the kernel, initrd and agent it booted, so each of
/// these is in the key; a change to any of them names a new template and the old one is never used again.
/// </summary>
public sealed record VmTemplateKey
{
    /// <summary>Bumped when the template's layout or the way it is made changes.</summary>
    internal const int FormatVersion = 1;

    /// <summary>Config fields that change nothing in the guest or its devices (timeouts, host-side logging, the
    /// knob itself). Every other field, including ones added later, is part of the key.</summary>
    internal static readonly string[] NonShapingFields =
        ["bootTimeoutSeconds", "kvmProbeSeconds", "agentTimeoutSeconds", "debug", "useTemplate", "virtiofsdPath"];

    private VmTemplateKey(string value, string description)
    {
        Value = value;
        Description = description;
    }

    /// <summary>32 hex digits: the template's directory name.</summary>
    public string Value { get; }

    /// <summary>What was hashed, one item a line (kept beside the template for a human who wonders why it exists).</summary>
    public string Description { get; }

    /// <summary>The key for <paramref name="config"/> booted with <paramref name="accelerator"/> and <paramref name="transport"/>.
    /// Files are identified by path, size and modification time (cheap at every pod start; a rebuilt initrd, which
    /// holds the agent, or an upgraded QEMU gets a new key).</summary>
    /// <exception cref="IOException">A file the key names cannot be read.</exception>
    /// <param name="nics">The guest's virtio-net devices (a template is made per NIC count; 0 keeps the key a
    /// template without NICs always had).</param>
    public static VmTemplateKey For(HypervisorConfig config, AcceleratorKind accelerator, AgentTransportKind transport, int nics = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(nics);
        ArgumentNullException.ThrowIfNull(config);
        var text = new StringBuilder();
        text.Append("format ").Append(FormatVersion).Append('\n');
        text.Append("accelerator ").Append(accelerator).Append('\n');
        text.Append("transport ").Append(transport).Append('\n');
        text.Append("qemu ").Append(Identify(config.QemuPath)).Append('\n');
        text.Append("kernel ").Append(Identify(config.KernelPath)).Append('\n');
        text.Append("initrd ").Append(string.IsNullOrEmpty(config.InitrdPath) ? "-" : Identify(config.InitrdPath)).Append('\n');
        text.Append("firmware ").Append(string.IsNullOrEmpty(config.Firmware) ? "-" : Identify(config.Firmware)).Append('\n');
        text.Append("config ").Append(ShapingConfig(config)).Append('\n');
        if (nics > 0)
        {
            text.Append("nics ").Append(nics).Append('\n');
        }

        var description = text.ToString();
        var hash = Convert.ToHexStringLower(Sha256.HashData(Encoding.UTF8.GetBytes(description)))[..32];
        return new VmTemplateKey(hash, description);
    }

    /// <summary>The config as canonical JSON without <see cref="NonShapingFields"/>.</summary>
    internal static string ShapingConfig(HypervisorConfig config)
    {
        var node = JsonSerializer.SerializeToNode(config, HypervisorConfigJsonContext.Default.HypervisorConfig)!.AsObject();
        foreach (var field in NonShapingFields)
        {
            node.Remove(field);
        }

        var sorted = new JsonObject();
        foreach (var (name, value) in node.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            sorted[name] = value?.DeepClone();
        }

        return sorted.ToJsonString();
    }

    private static string Identify(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new FileNotFoundException($"{path} not found", path);
        }

        return KvmVerdictKey.Identify(path);
    }
}
