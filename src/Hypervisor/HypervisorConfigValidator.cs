namespace ShimV2.Hypervisor;

/// <summary>Checks a <see cref="HypervisorConfig"/>; every error is one line ending in "(hypervisor config FILE, field NAME)".</summary>
public static class HypervisorConfigValidator
{
    public const int MinMemoryMiB = 64;
    public const int MaxVCpuLimit = 255;
    public const int MaxMemorySlots = 256;
    public const int MaxKvmProbeSeconds = 300;
    public const int MaxAgentTimeoutSeconds = 3600;
    public const int MaxTcgTranslationCacheMiB = 4096;

    public static readonly IReadOnlyList<string> Accelerators = ["kvm", "tcg", "auto"];
    public static readonly IReadOnlyList<string> AgentTransports = ["vsock", "virtio-serial", "auto"];
    public static readonly IReadOnlyList<string> SharedFsKinds = ["virtio-9p", "virtio-fs", "none"];

    /// <summary>Checks values and their combinations, not the file system.</summary>
    public static void Validate(HypervisorConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        OneOf(config, config.Accelerator, Accelerators, "accelerator");
        OneOf(config, config.AgentTransport, AgentTransports, "agentTransport");
        OneOf(config, config.SharedFs, SharedFsKinds, "sharedFs");

        Require(config, !string.IsNullOrWhiteSpace(config.QemuPath), "qemuPath is empty", "qemuPath");
        Require(config, !string.IsNullOrWhiteSpace(config.KernelPath), "kernelPath is empty", "kernelPath");
        Require(config, Path.IsPathFullyQualified(config.QemuPath), $"qemuPath must be an absolute path, got \"{config.QemuPath}\"", "qemuPath");
        Require(config, Path.IsPathFullyQualified(config.KernelPath), $"kernelPath must be an absolute path, got \"{config.KernelPath}\"", "kernelPath");
        Require(
            config,
            string.IsNullOrEmpty(config.InitrdPath) || Path.IsPathFullyQualified(config.InitrdPath),
            $"initrdPath must be empty or an absolute path, got \"{config.InitrdPath}\"",
            "initrdPath");
        Require(
            config,
            string.IsNullOrEmpty(config.Firmware) || Path.IsPathFullyQualified(config.Firmware),
            $"firmware must be empty or an absolute path, got \"{config.Firmware}\"",
            "firmware");
        Require(
            config,
            !string.IsNullOrWhiteSpace(config.MachineType) && config.MachineType.IndexOfAny([',', ' ', '=']) < 0,
            $"invalid machine type \"{config.MachineType}\"",
            "machineType");
        Require(
            config,
            config.TcgTranslationCacheMiB is >= 0 and <= MaxTcgTranslationCacheMiB,
            $"tcgTranslationCacheMiB must be 0 (QEMU's default) or between 1 and {MaxTcgTranslationCacheMiB}, got {config.TcgTranslationCacheMiB}",
            "tcgTranslationCacheMiB");
        Require(config, config.MemoryMiB >= MinMemoryMiB, $"memoryMiB must be at least {MinMemoryMiB}, got {config.MemoryMiB}", "memoryMiB");
        Require(
            config,
            config.MaxMemoryMiB == 0 || config.MaxMemoryMiB >= config.MemoryMiB,
            $"maxMemoryMiB ({config.MaxMemoryMiB}) must be 0 or at least memoryMiB ({config.MemoryMiB})",
            "maxMemoryMiB");
        Require(
            config,
            config.EffectiveMaxMemoryMiB == config.MemoryMiB || config.MemorySlots is >= 1 and <= MaxMemorySlots,
            $"memorySlots must be between 1 and {MaxMemorySlots} when maxMemoryMiB > memoryMiB, got {config.MemorySlots}",
            "memorySlots");
        Require(config, config.VCpus is >= 1 and <= MaxVCpuLimit, $"vCpus must be between 1 and {MaxVCpuLimit}, got {config.VCpus}", "vCpus");
        Require(
            config,
            config.MaxVCpus == 0 || (config.MaxVCpus >= config.VCpus && config.MaxVCpus <= MaxVCpuLimit),
            $"maxVCpus ({config.MaxVCpus}) must be 0 or between vCpus ({config.VCpus}) and {MaxVCpuLimit}",
            "maxVCpus");
        Require(config, config.BootTimeoutSeconds >= 1, $"bootTimeoutSeconds must be at least 1, got {config.BootTimeoutSeconds}", "bootTimeoutSeconds");
        Require(
            config,
            config.KvmProbeSeconds is >= 1 and <= MaxKvmProbeSeconds,
            $"kvmProbeSeconds must be between 1 and {MaxKvmProbeSeconds}, got {config.KvmProbeSeconds}",
            "kvmProbeSeconds");
        Require(
            config,
            config.AgentTimeoutSeconds is >= 1 and <= MaxAgentTimeoutSeconds,
            $"agentTimeoutSeconds must be between 1 and {MaxAgentTimeoutSeconds}, got {config.AgentTimeoutSeconds}",
            "agentTimeoutSeconds");
        Require(
            config,
            config.VirtiofsdPath.Length == 0 || Path.IsPathFullyQualified(config.VirtiofsdPath),
            $"virtiofsdPath must be empty or an absolute path, got \"{config.VirtiofsdPath}\"",
            "virtiofsdPath");
        Require(
            config,
            config.KernelParams.AsSpan().IndexOfAny('\r', '\n') < 0,
            "kernelParams must be one line",
            "kernelParams");
    }

    /// <summary>Checks that qemu is an executable file, that the kernel, initrd and firmware exist, and, with virtio-fs, virtiofsd.</summary>
    public static void ValidatePaths(HypervisorConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!File.Exists(config.QemuPath))
        {
            throw Error(config, $"qemu not found: {config.QemuPath}", "qemuPath");
        }

        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(config.QemuPath) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) == 0)
        {
            throw Error(config, $"qemu is not executable: {config.QemuPath}", "qemuPath");
        }

        if (!File.Exists(config.KernelPath))
        {
            throw Error(config, $"kernel not found: {config.KernelPath}", "kernelPath");
        }

        if (!string.IsNullOrEmpty(config.InitrdPath) && !File.Exists(config.InitrdPath))
        {
            throw Error(config, $"initrd not found: {config.InitrdPath}", "initrdPath");
        }

        if (!string.IsNullOrEmpty(config.Firmware) && !File.Exists(config.Firmware))
        {
            throw Error(config, $"firmware not found: {config.Firmware}", "firmware");
        }

        if (config.SharedFs == "virtio-fs")
        {
            _ = Virtiofs.VirtiofsdLocator.Resolve(config);
        }
    }

    /// <summary>An error about one setting: "message (hypervisor config /etc/file.json, field name)",
    /// or "message (hypervisor config field name)" for a config built in code.</summary>
    public static HypervisorConfigException Error(HypervisorConfig config, string message, string setting)
    {
        ArgumentNullException.ThrowIfNull(config);
        var where = config.SourcePath is null ? $"hypervisor config field {setting}" : $"hypervisor config {config.SourcePath}, field {setting}";
        return new HypervisorConfigException($"{message} ({where})");
    }

    private static void OneOf(HypervisorConfig config, string value, IReadOnlyList<string> allowed, string setting)
    {
        if (!allowed.Contains(value, StringComparer.Ordinal))
        {
            throw Error(config, $"unknown {setting} \"{value}\", expected one of: {string.Join(", ", allowed)}", setting);
        }
    }

    private static void Require(HypervisorConfig config, bool condition, string message, string setting)
    {
        if (!condition)
        {
            throw Error(config, message, setting);
        }
    }
}
