namespace ShimV2.Hypervisor.Qemu;

/// <summary>Composes the fragments for one VM.</summary>
internal static class QemuCommandLine
{
    /// <summary>The longest unix socket path (sun_path is 108 bytes with its terminating NUL).</summary>
    public const int MaxSocketPathBytes = 107;

    public static IReadOnlyList<QemuFragment> Fragments(VmSpec spec, HostResolution host, uint? guestCid)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(host);
        var config = spec.Config;
        var paths = new VmPaths(spec.WorkDirectory);
        var virtioFs = spec.SharedDirectory is not null && config.SharedFs == "virtio-fs";
        var fragments = new List<QemuFragment>
        {
            new BaseFragment(spec.SandboxId),
            new SeccompSandboxFragment(),
            new MachineFragment(config.MachineType, host.Accelerator, config.TcgTranslationCacheMiB),
            new MemoryFragment(config.MemoryMiB, config.EffectiveMaxMemoryMiB, config.MemorySlots),
        };
        if (spec.Template is { } template)
        {
            fragments.Add(new TemplateMemoryFragment(template.MemoryPath, Shared: !template.Restores, config.MemoryMiB));
        }
        else if (virtioFs)
        {
            fragments.Add(new SharedMemoryFragment(config.MemoryMiB));
        }

        fragments.AddRange(
        [
            new SmpFragment(config.VCpus, config.EffectiveMaxVCpus),
            new FirmwareFragment(config.Firmware),
            new KernelFragment(config.KernelPath, config.InitrdPath, KernelFragment.Params(config.KernelParams, memoryHotplug: config.EffectiveMaxMemoryMiB > config.MemoryMiB)),
            new SerialConsoleFragment(paths.ConsoleLog),
            new QmpFragment(paths.QmpSocket),
        ]);

        if (host.Transport == AgentTransportKind.Vsock)
        {
            fragments.Add(new VsockFragment(guestCid ?? throw new ArgumentException("vsock needs a guest cid", nameof(guestCid))));
        }
        else
        {
            fragments.Add(new VirtioSerialFragment(paths.AgentSocket));
        }

        if (spec.SharedDirectory is not null && config.SharedFs == "virtio-9p")
        {
            fragments.Add(new NinePShareFragment(spec.SharedDirectory, spec.ShareMountTag));
        }
        else if (virtioFs)
        {
            fragments.Add(new VirtioFsShareFragment(paths.VirtiofsSocket, spec.ShareMountTag));
        }

        // A restored guest has the template's NICs: the pod's taps, the template's MACs (the agent sets the pod's).
        var nics = spec.Template is { Restores: true } ? Templates.TemplateNics.ForRestore(spec.Nics) : spec.Nics;
        for (var i = 0; i < nics.Count; i++)
        {
            fragments.Add(new NicFragment(i, nics[i]));
        }

        if (config.FreePageReporting)
        {
            fragments.Add(new FreePageReportingFragment());
        }

        fragments.Add(new RngFragment());
        fragments.Add(new PidFileFragment(paths.PidFile));
        if (spec.Template is { Restores: true })
        {
            fragments.Add(new IncomingDeferFragment());
        }

        return fragments;
    }

    public static IReadOnlyList<string> Args(IEnumerable<QemuFragment> fragments) => fragments.SelectMany(f => f.Args).ToArray();

    /// <summary>Checks what the config cannot: the spec's own values and the socket path lengths.</summary>
    public static void ValidateSpec(VmSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (string.IsNullOrWhiteSpace(spec.SandboxId))
        {
            throw new HypervisorException("sandbox id is empty");
        }

        if (string.IsNullOrWhiteSpace(spec.WorkDirectory) || !Path.IsPathFullyQualified(spec.WorkDirectory))
        {
            throw new HypervisorException($"work directory must be an absolute path: \"{spec.WorkDirectory}\"");
        }

        var paths = new VmPaths(spec.WorkDirectory);
        string[] sockets = spec.Config.SharedFs == "virtio-fs" ? [paths.QmpSocket, paths.AgentSocket, paths.VirtiofsSocket] : [paths.QmpSocket, paths.AgentSocket];
        foreach (var socket in sockets)
        {
            var length = System.Text.Encoding.UTF8.GetByteCount(socket);
            if (length > MaxSocketPathBytes)
            {
                throw new HypervisorException(
                    $"work directory too long for unix sockets: {socket} is {length} bytes, the limit is {MaxSocketPathBytes}");
            }
        }

        foreach (var nic in spec.Nics)
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(nic.TapName, "^[A-Za-z0-9_.-]{1,15}$"))
            {
                throw new HypervisorException($"invalid tap name \"{nic.TapName}\": 1-15 letters, digits, '_', '.' or '-'");
            }

            if (!System.Text.RegularExpressions.Regex.IsMatch(nic.Mac, "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"))
            {
                throw new HypervisorException($"invalid MAC address \"{nic.Mac}\"");
            }
        }

        if (spec.NetworkNamespace is { } netns && !File.Exists(netns))
        {
            throw new HypervisorException($"network namespace not found: {netns}");
        }

        if (spec.SharedDirectory is not null)
        {
            if (spec.Config.SharedFs == "none")
            {
                throw HypervisorConfigValidator.Error(spec.Config, $"a shared directory was requested ({spec.SharedDirectory}) but sharedFs is none", "sharedFs");
            }

            if (!Directory.Exists(spec.SharedDirectory))
            {
                throw new HypervisorException($"shared directory not found: {spec.SharedDirectory}");
            }

            if (string.IsNullOrEmpty(spec.ShareMountTag) || System.Text.Encoding.UTF8.GetByteCount(spec.ShareMountTag) > 31 || spec.ShareMountTag.Any(c => c is ',' or ' ' || char.IsControl(c)))
            {
                throw new HypervisorException($"invalid share mount tag \"{spec.ShareMountTag}\": 1-31 bytes, no commas or spaces");
            }
        }
    }
}
