namespace ShimV2.GuestAgent.Tests.Vm;

/// <summary>
/// The guest image the VM tests boot: OUTDIR of guest-agent/image/build.sh, taken from $CSHARP_GUEST_IMAGE or
/// &lt;repo&gt;/artifacts/guest-image. guest-agent/image/test-agent.sh builds it (cached) and runs these tests.
/// </summary>
public static class AgentImage
{
    public const string QemuPath = "/usr/bin/qemu-system-x86_64";
    public const string BusyboxPath = "/bin/busybox";

    private static readonly Lazy<string?> Skip = new(Probe);

    public static string Directory =>
        Environment.GetEnvironmentVariable("CSHARP_GUEST_IMAGE") is { Length: > 0 } dir
            ? dir
            : Path.Combine(RepoRoot() ?? "/nonexistent", "artifacts", "guest-image");

    /// <summary>The PVH kernel (the custom kernel's image has only that), else the generic image's bzImage.</summary>
    public static string Kernel => File.Exists(Path.Combine(Directory, "vmlinux"))
        ? Path.Combine(Directory, "vmlinux")
        : Path.Combine(Directory, "vmlinuz");

    public static string Initrd => Path.Combine(Directory, "initrd.img");

    /// <summary>Why the VM tests cannot run here, or null.</summary>
    public static string? SkipReason => Skip.Value;

    private static string? Probe()
    {
        if (!File.Exists(QemuPath))
        {
            return $"{QemuPath} is missing (apt-get install qemu-system-x86)";
        }

        if (!File.Exists(Kernel) || !File.Exists(Initrd))
        {
            return $"no guest image in {Directory} (build it: guest-agent/image/build.sh {Directory}, or run guest-agent/image/test-agent.sh; or set CSHARP_GUEST_IMAGE)";
        }

        if (!File.Exists(BusyboxPath))
        {
            return $"{BusyboxPath} is missing (apt-get install busybox-static): the test containers' rootfs is made of it";
        }

        if (Environment.UserName != "root")
        {
            return "the VM tests run as root (QEMU's 9p export with security_model=none writes as the caller)";
        }

        return null;
    }

    private static string? RepoRoot()
    {
        for (var dir = AppContext.BaseDirectory; dir != null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "ShimV2.sln")))
            {
                return dir;
            }
        }

        return null;
    }
}

/// <summary>A test that boots the guest image under QEMU (TCG is enough); skipped with the reason when it cannot.</summary>
public sealed class VmFactAttribute : FactAttribute
{
    public VmFactAttribute()
    {
        if (AgentImage.SkipReason is { } reason)
        {
            Skip = reason;
        }

        Timeout = 300_000;
    }
}
