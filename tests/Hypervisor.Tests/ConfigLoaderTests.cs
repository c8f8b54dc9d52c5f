using System.Text.Json.Nodes;

namespace ShimV2.Hypervisor.Tests;

/// <summary>HypervisorConfigLoader and HypervisorConfigValidator: every error is one line naming the file and the field.</summary>
public sealed class ConfigLoaderTests : IDisposable
{
    private readonly TestDirectory dir = new("cfg");
    private readonly string qemu;
    private readonly string kernel;
    private readonly string initrd;

    public ConfigLoaderTests()
    {
        qemu = dir.Script("qemu-system-x86_64", "exit 0");
        kernel = dir.File("vmlinuz", "kernel");
        initrd = dir.File("initrd.img", "initrd");
    }

    public void Dispose() => dir.Dispose();

    [Fact]
    public void A_valid_config_loads_with_every_value()
    {
        var path = Write(Valid());

        var config = HypervisorConfigLoader.Load(path);

        Assert.Equal(qemu, config.QemuPath);
        Assert.Equal(kernel, config.KernelPath);
        Assert.Equal(initrd, config.InitrdPath);
        Assert.Equal("init=/init", config.KernelParams);
        Assert.Equal(256, config.MemoryMiB);
        Assert.Equal(1024, config.MaxMemoryMiB);
        Assert.Equal(2, config.MemorySlots);
        Assert.Equal(1, config.VCpus);
        Assert.Equal(4, config.MaxVCpus);
        Assert.Equal("q35", config.MachineType);
        Assert.Equal("tcg", config.Accelerator);
        Assert.Equal("virtio-serial", config.AgentTransport);
        Assert.Equal("virtio-9p", config.SharedFs);
        Assert.Equal(30, config.BootTimeoutSeconds);
        Assert.Equal(5, config.KvmProbeSeconds);
        Assert.True(config.Debug);
        Assert.Equal(path, config.SourcePath);
        Assert.Equal(1024, config.EffectiveMaxMemoryMiB);
        Assert.Equal(4, config.EffectiveMaxVCpus);
    }

    [Fact]
    public void Omitted_fields_take_defaults_and_comments_and_trailing_commas_are_fine()
    {
        var path = dir.File("min.json", $$"""
            // only what differs from the defaults
            { "qemuPath": "{{qemu}}", "kernelPath": "{{kernel}}", "initrdPath": "", }
            """);

        var config = HypervisorConfigLoader.Load(path);

        Assert.Equal(512, config.MemoryMiB);
        Assert.Equal(512, config.EffectiveMaxMemoryMiB);
        Assert.Equal(1, config.EffectiveMaxVCpus);
        Assert.Equal("auto", config.Accelerator);
        Assert.Equal("auto", config.AgentTransport);
        Assert.Equal(60, config.BootTimeoutSeconds);
        Assert.Equal(10, config.KvmProbeSeconds);
        Assert.Equal(30, config.AgentTimeoutSeconds);
        Assert.Equal("", config.InitrdPath);
    }

    [Fact]
    public void The_shipped_qemu_json_is_valid_and_leaves_room_to_hotplug()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "hypervisor-configs", "qemu.json");

        var config = HypervisorConfigLoader.Parse(File.ReadAllText(path), path);
        HypervisorConfigValidator.Validate(config);

        Assert.Equal("/usr/bin/qemu-system-x86_64", config.QemuPath);
        Assert.Equal("auto", config.Accelerator);
        Assert.Equal(10, config.KvmProbeSeconds);
        Assert.Equal("auto", config.AgentTransport);
        Assert.True(config.EffectiveMaxVCpus > config.VCpus);
        Assert.True(config.EffectiveMaxMemoryMiB > config.MemoryMiB);
        Assert.True(config.MemorySlots >= 1);
        Assert.True(config.FreePageReporting);
        Assert.True(config.UseTemplate);
    }

    [Fact]
    public void Templates_are_off_unless_the_config_asks_for_them()
    {
        Assert.False(HypervisorConfigLoader.Parse("{}", "/etc/qemu.json").UseTemplate);
        Assert.True(HypervisorConfigLoader.Parse("""{"useTemplate": true}""", "/etc/qemu.json").UseTemplate);
    }

    public static TheoryData<string, string, string> InvalidFields => new()
    {
        // field, value (JSON), message before the "(hypervisor config ...)" suffix
        { "memoryMiB", "32", "memoryMiB must be at least 64, got 32" },
        { "maxMemoryMiB", "128", "maxMemoryMiB (128) must be 0 or at least memoryMiB (256)" },
        { "memorySlots", "0", "memorySlots must be between 1 and 256 when maxMemoryMiB > memoryMiB, got 0" },
        { "vCpus", "0", "vCpus must be between 1 and 255, got 0" },
        { "vCpus", "300", "vCpus must be between 1 and 255, got 300" },
        { "maxVCpus", "300", "maxVCpus (300) must be 0 or between vCpus (1) and 255" },
        { "bootTimeoutSeconds", "0", "bootTimeoutSeconds must be at least 1, got 0" },
        { "kvmProbeSeconds", "0", "kvmProbeSeconds must be between 1 and 300, got 0" },
        { "kvmProbeSeconds", "301", "kvmProbeSeconds must be between 1 and 300, got 301" },
        { "agentTimeoutSeconds", "0", "agentTimeoutSeconds must be between 1 and 3600, got 0" },
        { "agentTimeoutSeconds", "3601", "agentTimeoutSeconds must be between 1 and 3600, got 3601" },
        { "tcgTranslationCacheMiB", "-1", "tcgTranslationCacheMiB must be 0 (QEMU's default) or between 1 and 4096, got -1" },
        { "tcgTranslationCacheMiB", "4097", "tcgTranslationCacheMiB must be 0 (QEMU's default) or between 1 and 4096, got 4097" },
        { "accelerator", "\"xen\"", "unknown accelerator \"xen\", expected one of: kvm, tcg, auto" },
        { "agentTransport", "\"tcp\"", "unknown agentTransport \"tcp\", expected one of: vsock, virtio-serial, auto" },
        { "sharedFs", "\"virtiofs\"", "unknown sharedFs \"virtiofs\", expected one of: virtio-9p, virtio-fs, none" },
        { "machineType", "\"q35,accel=kvm\"", "invalid machine type \"q35,accel=kvm\"" },
        { "machineType", "\"\"", "invalid machine type \"\"" },
        { "kernelParams", "\"a=1\\nb=2\"", "kernelParams must be one line" },
        { "qemuPath", "\"\"", "qemuPath is empty" },
        { "qemuPath", "\"bin/qemu\"", "qemuPath must be an absolute path, got \"bin/qemu\"" },
        { "qemuPath", "\"/nonexistent/qemu-system-x86_64\"", "qemu not found: /nonexistent/qemu-system-x86_64" },
        { "kernelPath", "\" \"", "kernelPath is empty" },
        { "kernelPath", "\"vmlinuz\"", "kernelPath must be an absolute path, got \"vmlinuz\"" },
        { "initrdPath", "\"initrd.img\"", "initrdPath must be empty or an absolute path, got \"initrd.img\"" },
        { "firmware", "\"qboot.rom\"", "firmware must be empty or an absolute path, got \"qboot.rom\"" },
        { "firmware", "\"/nonexistent/qboot.rom\"", "firmware not found: /nonexistent/qboot.rom" },
    };

    [Theory]
    [MemberData(nameof(InvalidFields))]
    public void Each_invalid_field_is_named_in_a_one_line_error(string field, string value, string message)
    {
        var json = Valid();
        json[field] = JsonNode.Parse(value);
        var path = Write(json);

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"{message} (hypervisor config {path}, field {field})", e.Message);
    }

    [Fact]
    public void A_missing_kernel_file_is_named_with_its_path_and_field()
    {
        var json = Valid();
        json["kernelPath"] = "/nonexistent/vmlinuz-hvt";
        var path = Write(json);

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"kernel not found: /nonexistent/vmlinuz-hvt (hypervisor config {path}, field kernelPath)", e.Message);
    }

    [Fact]
    public void A_missing_initrd_file_is_named_with_its_path_and_field()
    {
        var json = Valid();
        json["initrdPath"] = "/nonexistent/initrd-hvt.img";
        var path = Write(json);

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"initrd not found: /nonexistent/initrd-hvt.img (hypervisor config {path}, field initrdPath)", e.Message);
    }

    [Fact]
    public void A_qemu_that_is_not_executable_is_refused()
    {
        var json = Valid();
        json["qemuPath"] = kernel;
        var path = Write(json);

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"qemu is not executable: {kernel} (hypervisor config {path}, field qemuPath)", e.Message);
    }

    [Fact]
    public void Broken_JSON_names_the_line_and_column()
    {
        var path = dir.File("broken.json", "{\n  \"memoryMiB\": 512,\n  \"vCpus\": ,\n}");

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.StartsWith($"invalid hypervisor config {path}: line 3, column 12 ($.vCpus): ", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_value_of_the_wrong_type_names_the_field_and_line()
    {
        var path = dir.File("type.json", "{\n  \"memoryMiB\": \"lots\"\n}");

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"invalid hypervisor config {path}: line 2, column 22 ($.memoryMiB): memoryMiB must be a whole number", e.Message);
    }

    [Fact]
    public void An_unknown_field_is_refused_by_name()
    {
        var path = dir.File("unknown.json", "{\n  \"memoryMB\": 512\n}");

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"invalid hypervisor config {path}: line 2, column 14 ($.memoryMB): unknown field \"memoryMB\"", e.Message);
    }

    [Fact]
    public void A_null_path_field_is_refused_by_name()
    {
        var path = dir.File("null.json", "{\n  \"kernelPath\": null\n}");

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"invalid hypervisor config {path}: line 2, column 21 ($.kernelPath): kernelPath must not be null", e.Message);
    }

    [Theory]
    [InlineData("", "line 1, column 1: the file is empty")]
    [InlineData("null", "the file holds null, expected an object")]
    [InlineData("[1]", "line 1, column 2: expected an object")]
    public void Empty_null_or_non_object_files_are_refused(string text, string reason)
    {
        var path = dir.File("odd.json", text);

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"invalid hypervisor config {path}: {reason}", e.Message);
    }

    [Fact]
    public void A_missing_config_file_is_named()
    {
        var path = dir.Combine("nope.json");

        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigLoader.Load(path));

        Assert.Equal($"hypervisor config not found: {path}", e.Message);
    }

    [Fact]
    public void A_config_built_in_code_names_the_field_without_a_file()
    {
        var e = Assert.Throws<HypervisorConfigException>(() => HypervisorConfigValidator.Validate(new HypervisorConfig { VCpus = 0 }));

        Assert.Equal("vCpus must be between 1 and 255, got 0 (hypervisor config field vCpus)", e.Message);
    }

    [Fact]
    public void Serialize_round_trips()
    {
        var config = HypervisorConfigLoader.Load(Write(Valid()));

        var again = HypervisorConfigLoader.Parse(HypervisorConfigLoader.Serialize(config), "again.json");

        Assert.Equal(HypervisorConfigLoader.Serialize(config), HypervisorConfigLoader.Serialize(again));
        Assert.Equal(1024, again.MaxMemoryMiB);
    }

    private JsonObject Valid() => new()
    {
        ["qemuPath"] = qemu,
        ["kernelPath"] = kernel,
        ["initrdPath"] = initrd,
        ["kernelParams"] = "init=/init",
        ["machineType"] = "q35",
        ["accelerator"] = "tcg",
        ["agentTransport"] = "virtio-serial",
        ["sharedFs"] = "virtio-9p",
        ["memoryMiB"] = 256,
        ["maxMemoryMiB"] = 1024,
        ["memorySlots"] = 2,
        ["vCpus"] = 1,
        ["maxVCpus"] = 4,
        ["bootTimeoutSeconds"] = 30,
        ["kvmProbeSeconds"] = 5,
        ["debug"] = true,
    };

    private string Write(JsonObject json) => dir.File("qemu.json", json.ToJsonString());
}
