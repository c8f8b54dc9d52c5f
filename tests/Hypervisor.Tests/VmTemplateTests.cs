using ShimV2.Hypervisor.Qemu;
using ShimV2.Hypervisor.Templates;

namespace ShimV2.Hypervisor.Tests;

/// <summary>VM templates without QEMU: the fragments, what names a template, and the store's locking and publishing.</summary>
public sealed class VmTemplateTests : IDisposable
{
    private static readonly HostResolution Tcg = new(AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial);
    private readonly TestDirectory dir = new("tpl");

    public void Dispose() => dir.Dispose();

    [Theory]
    [InlineData(true, "share=on")]
    [InlineData(false, "share=off")]
    public void Template_ram_is_a_file_backend_shared_while_built_and_private_when_restored(bool shared, string share) =>
        Assert.Equal(
            ["-object", $"memory-backend-file,id=tplram0,mem-path=/run/t,,x/memory,{share},size=512M", "-machine", "memory-backend=tplram0"],
            new TemplateMemoryFragment("/run/t,x/memory", shared, 512).Args);

    [Fact]
    public void A_restored_vm_waits_for_its_state() => Assert.Equal(["-incoming", "defer"], new IncomingDeferFragment().Args);

    [Fact]
    public void The_template_vm_and_a_restored_pod_have_the_same_devices_in_the_same_order()
    {
        var config = new HypervisorConfig { SharedFs = "virtio-9p", MaxMemoryMiB = 2048, MaxVCpus = 4 };
        Directory.CreateDirectory(dir.Combine("share"));
        var template = new VmSpec
        {
            SandboxId = "template-0123", WorkDirectory = dir.Combine("b"), Config = config, SharedDirectory = dir.Combine("share"),
            Template = new VmTemplateBoot(dir.Combine("b", "memory"), null),
        };
        var pod = new VmSpec
        {
            SandboxId = "pod", WorkDirectory = dir.Combine("pod"), Config = config, SharedDirectory = dir.Combine("share"),
        }.WithTemplate(new VmTemplateBoot(dir.Combine("t", "memory"), dir.Combine("t", "state")));

        var built = QemuCommandLine.Fragments(template, Tcg, guestCid: null);
        var restored = QemuCommandLine.Fragments(pod, Tcg, guestCid: null);

        Assert.Equal(built.Select(f => f.GetType()), restored.Where(f => f is not IncomingDeferFragment).Select(f => f.GetType()));
        Assert.Contains(new TemplateMemoryFragment(dir.Combine("b", "memory"), true, 512), built);
        Assert.Contains(new TemplateMemoryFragment(dir.Combine("t", "memory"), false, 512), restored);
        Assert.DoesNotContain(built, f => f is IncomingDeferFragment);
        Assert.Single(restored.OfType<IncomingDeferFragment>());
    }

    [Fact]
    public void A_cold_boot_has_no_template_fragments()
    {
        var spec = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = new HypervisorConfig() };
        var fragments = QemuCommandLine.Fragments(spec, Tcg, guestCid: null);
        Assert.DoesNotContain(fragments, f => f is TemplateMemoryFragment or IncomingDeferFragment);
    }

    [Fact]
    public void The_same_config_and_files_name_the_same_template()
    {
        var config = Config();
        Assert.Equal(Key(config).Value, Key(Config()).Value);
        Assert.Matches("^[0-9a-f]{32}$", Key(config).Value);
    }

    [Fact]
    public void Timeouts_logging_and_the_knob_itself_do_not_change_the_template()
    {
        var changed = Config();
        changed.BootTimeoutSeconds = 7;
        changed.AgentTimeoutSeconds = 9;
        changed.KvmProbeSeconds = 3;
        changed.Debug = true;
        changed.UseTemplate = !changed.UseTemplate;
        Assert.Equal(Key(Config()).Value, Key(changed).Value);
    }

    public static TheoryData<string> ShapingChanges => new()
    {
        "memoryMiB", "maxMemoryMiB", "memorySlots", "vCpus", "maxVCpus", "machineType", "kernelParams", "sharedFs", "freePageReporting", "firmware",
    };

    [Theory]
    [MemberData(nameof(ShapingChanges))]
    public void Every_field_that_shapes_the_vm_names_another_template(string field)
    {
        var changed = Config();
        switch (field)
        {
            case "memoryMiB": changed.MemoryMiB = 256; break;
            case "maxMemoryMiB": changed.MaxMemoryMiB = 4096; break;
            case "memorySlots": changed.MemorySlots = 2; break;
            case "vCpus": changed.VCpus = 2; break;
            case "maxVCpus": changed.MaxVCpus = 8; break;
            case "machineType": changed.MachineType = "pc"; break;
            case "kernelParams": changed.KernelParams = "loglevel=7"; break;
            case "sharedFs": changed.SharedFs = "none"; break;
            case "freePageReporting": changed.FreePageReporting = false; break;
            case "firmware": changed.Firmware = dir.File("other.rom", "rom"); break;
            default: throw new ArgumentOutOfRangeException(nameof(field));
        }

        Assert.NotEqual(Key(Config()).Value, Key(changed).Value);
    }

    [Theory]
    [InlineData("kernel")]
    [InlineData("initrd")]
    [InlineData("qemu")]
    public void A_rebuilt_kernel_initrd_or_qemu_names_another_template(string file)
    {
        var before = Key(Config()).Value;
        File.WriteAllText(dir.Combine(file), "rebuilt, and of another size");
        Assert.NotEqual(before, Key(Config()).Value);
    }

    [Fact]
    public void The_accelerator_and_the_agent_transport_are_part_of_the_key()
    {
        var config = Config();
        var tcg = VmTemplateKey.For(config, AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial).Value;
        Assert.NotEqual(tcg, VmTemplateKey.For(config, AcceleratorKind.Kvm, AgentTransportKind.VirtioSerial).Value);
        Assert.NotEqual(tcg, VmTemplateKey.For(config, AcceleratorKind.Tcg, AgentTransportKind.Vsock).Value);
    }

    [Fact]
    public void A_template_is_made_per_nic_count_and_without_nics_keeps_its_old_key()
    {
        var config = Config();
        var none = Key(config);
        Assert.Equal(none.Value, VmTemplateKey.For(config, AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial, nics: 0).Value);
        Assert.DoesNotContain("nics", none.Description, StringComparison.Ordinal);
        var one = VmTemplateKey.For(config, AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial, nics: 1);
        var two = VmTemplateKey.For(config, AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial, nics: 2);
        Assert.Equal(3, new[] { none.Value, one.Value, two.Value }.Distinct().Count());
        Assert.Contains("nics 2\n", two.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void The_template_vm_has_template_nics_and_a_restored_pod_has_its_own_taps_behind_the_template_macs()
    {
        var config = new HypervisorConfig { SharedFs = "none" };
        var podNics = new[] { new VmNic("tap0_cs", "0a:58:0a:58:00:05"), new VmNic("tap1_cs", "0a:58:0a:59:00:07") };
        var template = new VmSpec
        {
            SandboxId = "template-0123", WorkDirectory = dir.Combine("b"), Config = config, Nics = TemplateNics.ForTemplate(2),
            Template = new VmTemplateBoot(dir.Combine("b", "memory"), null),
        };
        var pod = new VmSpec { SandboxId = "pod", WorkDirectory = dir.Combine("pod"), Config = config, Nics = podNics }
            .WithTemplate(new VmTemplateBoot(dir.Combine("t", "memory"), dir.Combine("t", "state")));
        var cold = new VmSpec { SandboxId = "pod", WorkDirectory = dir.Combine("pod"), Config = config, Nics = podNics };

        var built = QemuCommandLine.Fragments(template, Tcg, guestCid: null).OfType<NicFragment>().ToArray();
        var restored = QemuCommandLine.Fragments(pod, Tcg, guestCid: null).OfType<NicFragment>().ToArray();

        Assert.Equal(
            [new NicFragment(0, new VmNic("cstpl0", "02:c5:00:00:00:00")), new NicFragment(1, new VmNic("cstpl1", "02:c5:00:00:00:01"))],
            built);
        Assert.Equal(
            [new NicFragment(0, new VmNic("tap0_cs", "02:c5:00:00:00:00")), new NicFragment(1, new VmNic("tap1_cs", "02:c5:00:00:00:01"))],
            restored);
        Assert.Equal(
            [new NicFragment(0, podNics[0]), new NicFragment(1, podNics[1])],
            QemuCommandLine.Fragments(cold, Tcg, guestCid: null).OfType<NicFragment>());
        Assert.Equal(
            ["-netdev", "tap,id=net1,ifname=tap1_cs,script=no,downscript=no", "-device", "virtio-net-pci,netdev=net1,mac=02:c5:00:00:00:01,romfile="],
            restored[1].Args);
    }

    [Fact]
    public void A_store_too_deep_for_unix_sockets_serves_no_template()
    {
        Assert.Null(QemuVm.StoreRefusal(new VmTemplateStore("/run/containerd-shim-csharp/.templates")));
        var deep = "/" + string.Join('/', Enumerable.Repeat("deep-directory", 6));
        Assert.Equal($"the template directory {deep} is too long for unix socket paths", QemuVm.StoreRefusal(new VmTemplateStore(deep)));
    }

    [Fact]
    public void Templates_of_other_nic_counts_are_another_family_of_the_config_file()
    {
        var config = new HypervisorConfig { SourcePath = "/etc/qemu.json" };
        var plain = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = config };
        var withNic = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = config, Nics = [new VmNic("tap0", "02:00:00:00:00:01")] };
        Assert.Equal("/etc/qemu.json", QemuVm.TemplateFamily(plain));
        Assert.Equal("/etc/qemu.json (1 NICs)", QemuVm.TemplateFamily(withNic));
    }

    [Fact]
    public void A_missing_kernel_is_an_io_error_not_a_key()
    {
        var config = Config();
        config.KernelPath = dir.Combine("no-such-kernel");
        Assert.ThrowsAny<IOException>(() => Key(config));
    }

    [Fact]
    public void A_build_is_published_whole_and_found_afterwards()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var key = Key(Config());
        Assert.Null(store.Find(key));

        using (var build = store.TryBeginBuild(key, "/etc/qemu.json")!)
        {
            File.WriteAllText(build.MemoryPath, "ram");
            Assert.Null(store.Find(key));
            File.WriteAllText(build.StatePath, "state");
            Assert.Null(store.Find(key));
            build.Publish();
            Assert.False(Directory.Exists(build.WorkDirectory));
        }

        var template = store.Find(key)!;
        Assert.Equal(dir.Combine("templates", key.Value), template.Directory);
        Assert.Equal("state", File.ReadAllText(template.StatePath));
        Assert.Equal(key.Description, File.ReadAllText(Path.Combine(template.Directory, VmTemplate.KeyFileName)));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(store.Directory));
    }

    [Fact]
    public void Only_one_builder_per_key_at_a_time_and_the_lock_goes_with_the_build()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var key = Key(Config());
        using (var first = store.TryBeginBuild(key, null))
        {
            Assert.NotNull(first);
            Assert.Null(store.TryBeginBuild(key, null));
        }

        using var again = store.TryBeginBuild(key, null);
        Assert.NotNull(again);
    }

    [Fact]
    public void An_abandoned_build_leaves_nothing_behind()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var key = Key(Config());
        string work;
        using (var build = store.TryBeginBuild(key, null)!)
        {
            work = build.WorkDirectory;
            File.WriteAllText(build.MemoryPath, "half a template");
        }

        Assert.False(Directory.Exists(work));
        Assert.Null(store.Find(key));
    }

    [Fact]
    public void A_dead_builders_directory_is_removed_by_the_next_build()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var dead = dir.Combine("templates", ".b-999999999-abcd");
        Directory.CreateDirectory(dead);
        File.WriteAllText(Path.Combine(dead, "memory"), "left by a crashed shim");

        using var build = store.TryBeginBuild(Key(Config()), null)!;

        Assert.False(Directory.Exists(dead));
        Assert.True(Directory.Exists(build.WorkDirectory));
    }

    [Fact]
    public void Publishing_removes_older_templates_of_the_same_config_file_only()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var (a, b) = (ConfigFile("a.json"), ConfigFile("b.json"));
        var old = Publish(store, Key(Config()), a);
        var other = Publish(store, VmTemplateKey.For(Config(), AcceleratorKind.Kvm, AgentTransportKind.VirtioSerial), b);
        var otherNics = Publish(store, VmTemplateKey.For(Config(), AcceleratorKind.Kvm, AgentTransportKind.Vsock), $"{a} (1 NICs)");
        var changed = Config();
        changed.MemoryMiB = 1024;

        var current = Publish(store, Key(changed), a);

        Assert.False(Directory.Exists(old.Directory));
        Assert.True(Directory.Exists(other.Directory));
        Assert.True(Directory.Exists(otherNics.Directory));
        Assert.True(Directory.Exists(current.Directory));
    }

    [Fact]
    public void Publishing_removes_the_templates_of_config_files_that_are_gone()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var (kept, removed) = (ConfigFile("kept.json"), ConfigFile("removed.json"));
        var ofRemoved = Publish(store, VmTemplateKey.For(Config(), AcceleratorKind.Kvm, AgentTransportKind.VirtioSerial), removed);
        var ofRemovedWithNics = Publish(store, VmTemplateKey.For(Config(), AcceleratorKind.Kvm, AgentTransportKind.Vsock), $"{removed} (2 NICs)");
        var noFile = Publish(store, VmTemplateKey.For(Config(), AcceleratorKind.Tcg, AgentTransportKind.Vsock), null);
        File.Delete(removed);

        var current = Publish(store, Key(Config()), kept);

        Assert.False(Directory.Exists(ofRemoved.Directory));
        Assert.False(Directory.Exists(ofRemovedWithNics.Directory));
        Assert.True(Directory.Exists(noFile.Directory));
        Assert.True(Directory.Exists(current.Directory));
    }

    [Theory]
    [InlineData("", false)]
    [InlineData("relative.json", false)]
    [InlineData("/nonexistent/qemu.json", true)]
    [InlineData("/nonexistent/qemu.json (1 NICs)", true)]
    [InlineData("/proc/self/status", false)]
    [InlineData("/proc/self/status (3 NICs)", false)]
    public void A_template_source_names_a_gone_config_file_only_when_its_path_is_absent(string source, bool gone) =>
        Assert.Equal(gone, VmTemplateStore.ConfigFileGone(source));

    private string ConfigFile(string name)
    {
        var path = dir.Combine(name);
        File.WriteAllText(path, "{}");
        return path;
    }

    [Fact]
    public void A_discarded_template_is_gone_and_built_again_next_time()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var key = Key(Config());
        var template = Publish(store, key, null);

        store.Discard(template);

        Assert.Null(store.Find(key));
        Assert.Empty(Directory.GetDirectories(store.Directory));
    }

    [Fact]
    public void A_guest_that_cannot_boot_is_remembered_per_key()
    {
        var store = new VmTemplateStore(dir.Combine("templates"));
        var key = Key(Config());
        using (store.TryBeginBuild(key, null))
        {
            Assert.Null(store.BuildFailure(key));
            store.RecordBuildFailure(key, "guest kernel panic: VFS: Unable to mount root fs");
        }

        Assert.Equal("guest kernel panic: VFS: Unable to mount root fs", store.BuildFailure(key));
        Assert.Null(store.BuildFailure(VmTemplateKey.For(Config(), AcceleratorKind.Kvm, AgentTransportKind.VirtioSerial)));
    }

    [Fact]
    public void Pods_the_template_cannot_serve_say_why()
    {
        var config = new HypervisorConfig { SharedFs = "virtio-9p" };
        Directory.CreateDirectory(dir.Combine("share"));
        var plain = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = config, SharedDirectory = dir.Combine("share") };
        var withNic = new VmSpec
        {
            SandboxId = "sb", WorkDirectory = "/run/vm", Config = config, SharedDirectory = dir.Combine("share"), Nics = [new VmNic("tap0", "02:00:00:00:00:01")],
            NetworkNamespace = "/var/run/netns/cni-1",
        };
        var nicOutsideANamespace = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = config, SharedDirectory = dir.Combine("share"), Nics = withNic.Nics };
        var virtioFs = new VmSpec { SandboxId = "sb", WorkDirectory = "/run/vm", Config = new HypervisorConfig { SharedFs = "virtio-fs" }, SharedDirectory = dir.Combine("share") };
        var host = VmHost.Default;

        Assert.Null(QemuVm.TemplateRefusal(plain, Tcg, host));
        Assert.Null(QemuVm.TemplateRefusal(withNic, Tcg, host));
        Assert.Contains("network namespace", QemuVm.TemplateRefusal(nicOutsideANamespace, Tcg, host), StringComparison.Ordinal);
        Assert.Contains("virtio-fs", QemuVm.TemplateRefusal(virtioFs, Tcg, host), StringComparison.Ordinal);
        Assert.Contains("vsock", QemuVm.TemplateRefusal(plain, Tcg with { Transport = AgentTransportKind.Vsock }, host), StringComparison.Ordinal);
        Assert.Contains("stand-in", QemuVm.TemplateRefusal(plain, Tcg, host with { StandIn = new KvmStandIn(false) }), StringComparison.Ordinal);
    }

    private static VmTemplateKey Key(HypervisorConfig config) => VmTemplateKey.For(config, AcceleratorKind.Tcg, AgentTransportKind.VirtioSerial);

    private static VmTemplate Publish(VmTemplateStore store, VmTemplateKey key, string? source)
    {
        using var build = store.TryBeginBuild(key, source)!;
        File.WriteAllText(build.MemoryPath, "ram");
        File.WriteAllText(build.StatePath, "state");
        return build.Publish();
    }

    private HypervisorConfig Config()
    {
        foreach (var name in new[] { "kernel", "initrd", "qemu", "qboot.rom" })
        {
            if (!File.Exists(dir.Combine(name)))
            {
                dir.File(name, name);
            }
        }

        return new HypervisorConfig
        {
            QemuPath = dir.Combine("qemu"),
            KernelPath = dir.Combine("kernel"),
            InitrdPath = dir.Combine("initrd"),
            Firmware = dir.Combine("qboot.rom"),
            MaxMemoryMiB = 2048,
            MaxVCpus = 4,
        };
    }
}
