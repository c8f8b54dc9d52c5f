namespace ShimV2.Hypervisor;

/// <summary>What to boot for one sandbox.</summary>
public sealed class VmSpec
{
    public required string SandboxId { get; init; }

    /// <summary>Per-sandbox directory: qmp.sock, agent.sock, console.log and qemu.pid live here.
    /// Keep it short: unix socket paths are limited to 107 bytes.</summary>
    public required string WorkDirectory { get; init; }

    public required HypervisorConfig Config { get; init; }

    /// <summary>A host directory exported to the guest (virtio-9p or virtio-fs, per the config's sharedFs) under
    /// <see cref="ShareMountTag"/>; null for none.</summary>
    public string? SharedDirectory { get; init; }

    public string ShareMountTag { get; init; } = "csharpshare";

    /// <summary>
    /// A network namespace (path, e.g. /var/run/netns/cni-...) QEMU is started in, so that the taps of
    /// <see cref="Nics"/> are created there; null: the shim's own.
    /// </summary>
    public string? NetworkNamespace { get; init; }

    /// <summary>virtio-net NICs, each backed by a tap QEMU creates by name (in <see cref="NetworkNamespace"/>).</summary>
    public IReadOnlyList<VmNic> Nics { get; init; } = [];

    /// <summary>Set by the template path only: this VM builds a template or is restored from one.</summary>
    internal VmTemplateBoot? Template { get; init; }

    /// <summary>This spec with <paramref name="template"/> (VmSpec is not a record: its callers build it with init).</summary>
    internal VmSpec WithTemplate(VmTemplateBoot template) => new()
    {
        SandboxId = SandboxId,
        WorkDirectory = WorkDirectory,
        Config = Config,
        SharedDirectory = SharedDirectory,
        ShareMountTag = ShareMountTag,
        NetworkNamespace = NetworkNamespace,
        Nics = Nics,
        Template = template,
    };
}

/// <summary>A VM's part in a template: RAM in <paramref name="MemoryPath"/>; with <paramref name="StatePath"/> it is
/// restored from that saved device state, without it it is the template VM being built. The migration socket is made
/// in <paramref name="SocketDirectory"/> when given (a pod's work directory, under a 64-character CRI sandbox id, is
/// too long for a unix socket path).</summary>
internal sealed record VmTemplateBoot(string MemoryPath, string? StatePath, string? SocketDirectory = null)
{
    public bool Restores => StatePath is not null;
}

/// <summary>A guest NIC: the tap behind it on the host and the MAC the guest sees.</summary>
public sealed record VmNic(string TapName, string Mac);

/// <summary>The files QEMU creates in <see cref="VmSpec.WorkDirectory"/>.</summary>
public sealed record VmPaths(string WorkDirectory)
{
    public string QmpSocket => Path.Combine(WorkDirectory, "qmp.sock");

    public string AgentSocket => Path.Combine(WorkDirectory, "agent.sock");

    public string ConsoleLog => Path.Combine(WorkDirectory, "console.log");

    /// <summary>virtiofsd's vhost-user socket (sharedFs virtio-fs).</summary>
    public string VirtiofsSocket => Path.Combine(WorkDirectory, "virtiofs.sock");

    public string PidFile => Path.Combine(WorkDirectory, "qemu.pid");

    /// <summary>QEMU's <see cref="QemuIdentity"/>, beside its pid file, for a `delete` after the shim died.</summary>
    public string IdentityFile => Path.Combine(WorkDirectory, QemuIdentity.FileName);
}
