using System.Text.Json.Serialization;

namespace ShimV2.Hypervisor;

/// <summary>The hypervisor settings, read from JSON with camelCase names (see hypervisor-configs/qemu.json).</summary>
public sealed class HypervisorConfig
{
    public const string DefaultQemuPath = "/usr/bin/qemu-system-x86_64";
    public const string DefaultKernelPath = "/usr/share/csharp-shim/vmlinuz";
    public const string DefaultInitrdPath = "/usr/share/csharp-shim/initrd.img";

    public string QemuPath { get; set; } = DefaultQemuPath;

    public string KernelPath { get; set; } = DefaultKernelPath;

    /// <summary>The firmware QEMU runs before the kernel (<c>-bios</c>), e.g. /usr/share/qemu/qboot.rom, which
    /// boots a direct kernel in a fraction of SeaBIOS's time; empty: QEMU's default (SeaBIOS).</summary>
    public string Firmware { get; set; } = "";

    /// <summary>The guest's initramfs; empty boots the kernel without one.</summary>
    public string InitrdPath { get; set; } = DefaultInitrdPath;

    /// <summary>Extra kernel parameters, appended after <c>console=ttyS0 quiet panic=1 swiotlb=noforce</c> (and <c>memhp_default_state=online</c> with memory hotplug).</summary>
    public string KernelParams { get; set; } = "";

    public int MemoryMiB { get; set; } = 512;

    /// <summary>0 = same as <see cref="MemoryMiB"/>; larger enables memory hotplug up to this size.</summary>
    public int MaxMemoryMiB { get; set; }

    /// <summary>Hotplug DIMM slots, used when <see cref="MaxMemoryMiB"/> exceeds <see cref="MemoryMiB"/>.</summary>
    public int MemorySlots { get; set; } = 4;

    /// <summary>A virtio-balloon with free-page reporting: memory the guest frees returns to the host.</summary>
    public bool FreePageReporting { get; set; } = true;

    public int VCpus { get; set; } = 1;

    /// <summary>0 = same as <see cref="VCpus"/>; larger enables vCPU hotplug up to this count.</summary>
    public int MaxVCpus { get; set; }

    public string MachineType { get; set; } = "q35";

    /// <summary>Under TCG, the size of QEMU's translated-code cache in MiB (<c>-accel tcg,tb-size=</c>): resident
    /// memory every pod's QEMU fills before it flushes. 0 = QEMU's default (1 GiB on a host with 8 GiB or more).
    /// Unused under KVM.</summary>
    public int TcgTranslationCacheMiB { get; set; } = DefaultTcgTranslationCacheMiB;

    /// <summary>Room for the code a pod's guest runs (the kernel's boot, the agent, a container's programs) without
    /// flushing often; an idle pod filled about 60 MiB of QEMU's 1 GiB default.</summary>
    public const int DefaultTcgTranslationCacheMiB = 32;

    /// <summary>"kvm", "tcg" or "auto": KVM only where it runs this guest kernel (see <see cref="AcceleratorDecision"/>), else TCG.</summary>
    public string Accelerator { get; set; } = "auto";

    /// <summary>"vsock", "virtio-serial" or "auto" (vsock when /dev/vhost-vsock exists).</summary>
    public string AgentTransport { get; set; } = "auto";

    /// <summary>How the pod's share (container root filesystems, volumes) reaches the guest: "virtio-9p" (QEMU's own
    /// 9p server), "virtio-fs" (a virtiofsd per pod, guest RAM in a shared memfd) or "none".</summary>
    public string SharedFs { get; set; } = "virtio-9p";

    /// <summary>The virtiofsd used with sharedFs virtio-fs; empty: the first of <see cref="Virtiofs.VirtiofsdLocator.SearchPaths"/>
    /// that exists (Debian 13's Rust virtiofsd, then the C one of Debian 12's QEMU 7.2).</summary>
    public string VirtiofsdPath { get; set; } = "";

    public int BootTimeoutSeconds { get; set; } = 60;

    /// <summary>How long a guest booted under KVM that is not yet known to work gets to show a sign of life on
    /// its console; without one it is stopped and, under "auto", booted again under TCG.</summary>
    public int KvmProbeSeconds { get; set; } = 10;

    /// <summary>How long a guest agent call may go unanswered before it fails as "the VM may be hung". Calls that
    /// wait by design (a process's exit, its output, OOM events, log records) have no deadline.</summary>
    public int AgentTimeoutSeconds { get; set; } = 30;

    /// <summary>Start pods from a VM template (a guest booted once per config and saved) instead of booting each
    /// one; pods the template path cannot serve (NICs, virtio-fs, vsock) boot cold.</summary>
    public bool UseTemplate { get; set; }

    /// <summary>Logs QEMU's command line and stderr at Information instead of Debug.</summary>
    public bool Debug { get; set; }

    /// <summary>The file this config was loaded from, for error messages; null when built in code.</summary>
    [JsonIgnore]
    public string? SourcePath { get; set; }

    /// <summary>MaxMemoryMiB with 0 resolved.</summary>
    [JsonIgnore]
    public int EffectiveMaxMemoryMiB => MaxMemoryMiB == 0 ? MemoryMiB : MaxMemoryMiB;

    /// <summary>MaxVCpus with 0 resolved.</summary>
    [JsonIgnore]
    public int EffectiveMaxVCpus => MaxVCpus == 0 ? VCpus : MaxVCpus;
}

public enum AcceleratorKind
{
    Kvm,
    Tcg,
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    RespectNullableAnnotations = true,
    WriteIndented = true)]
[JsonSerializable(typeof(HypervisorConfig))]
internal sealed partial class HypervisorConfigJsonContext : JsonSerializerContext;
