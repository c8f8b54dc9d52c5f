using System.Text.Json;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// What the end-to-end tests run against, and why they cannot run here (if so).
/// <list type="bullet">
/// <item><c>E2E_RUNTIME</c>: the containerd runtime type; default <c>io.containerd.csharp.v1</c> (ours).
/// <c>io.containerd.runc.v2</c> runs the same scenarios against runc to check the harness itself.</item>
/// <item><c>E2E_RUNTIME_CONFIG</c>: the hypervisor config passed with <c>--runtime-config-path</c>;
/// default <c>artifacts/config/qemu.json</c>.</item>
/// <item><c>ARTIFACTS</c>: default <c>&lt;repo&gt;/artifacts</c> (what eng/build.sh produces).</item>
/// <item><c>E2E_CONTAINERD</c>: the containerd series to run against: <c>1.6</c> (default, Debian bookworm's, on
/// PATH), <c>1.7</c> or <c>2.1</c> (trixie's and sid's, extracted by eng/lib/containerd-versions.sh into
/// <c>CTRD_VERSIONS_CACHE</c>, default /var/cache/containerd-shim-csharp/containerd).</item>
/// </list>
/// </summary>
public static class E2EEnvironment
{
    public const string OurRuntime = "io.containerd.csharp.v1";
    public const string RuncRuntime = "io.containerd.runc.v2";
    public const string Image = "docker.io/library/busybox:csharp";

    /// <summary>Where our shim keeps per-sandbox state: /run/containerd-shim-csharp/&lt;sandbox-id&gt;.</summary>
    public const string SandboxRoot = "/run/containerd-shim-csharp";

    /// <summary>Where containerd 1.6 shims (runc's convention, and ours) put their TTRPC sockets.</summary>
    public const string ShimSocketDirectory = "/run/containerd/s";

    private static readonly Lazy<string?> LazySkipReason = new(ComputeSkipReason);

    public static string Runtime { get; } =
        Environment.GetEnvironmentVariable("E2E_RUNTIME") is { Length: > 0 } r ? r : OurRuntime;

    public static bool IsVmRuntime => Runtime == OurRuntime;

    /// <summary>The containerd series under test ("1.6", "1.7", "2.1").</summary>
    public static string ContainerdSeries { get; } =
        Environment.GetEnvironmentVariable("E2E_CONTAINERD") is { Length: > 0 } v ? v : "1.6";

    /// <summary>Where that series' containerd and ctr are: null for 1.6 (the ones on PATH).</summary>
    public static string? ContainerdBinDirectory { get; } = ContainerdSeries == "1.6" ? null : Path.Combine(
        Environment.GetEnvironmentVariable("CTRD_VERSIONS_CACHE") is { Length: > 0 } cache ? cache : "/var/cache/containerd-shim-csharp/containerd",
        ContainerdSeries);

    /// <summary>containerd 2.x (config version 3, bootstrap.json, split CRI plugins).</summary>
    public static bool IsContainerd2 => !ContainerdSeries.StartsWith("1.", StringComparison.Ordinal);

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Artifacts { get; } =
        Environment.GetEnvironmentVariable("ARTIFACTS") is { Length: > 0 } a ? a : Path.Combine(RepoRoot, "artifacts");

    public static string ShimBinary => Path.Combine(Artifacts, "bin", "containerd-shim-csharp-v1");

    /// <summary>The PVH kernel every guest image has (the generic kernel's image also has vmlinuz).</summary>
    public static string GuestKernel => Path.Combine(Artifacts, "guest", "vmlinux");

    public static string GuestInitrd => Path.Combine(Artifacts, "guest", "initrd.img");

    public static string RuntimeConfig { get; } =
        Environment.GetEnvironmentVariable("E2E_RUNTIME_CONFIG") is { Length: > 0 } c ? c : Path.Combine(Artifacts, "config", "qemu.json");

    public static string ContainerdLibrary => Path.Combine(RepoRoot, "eng", "lib", "containerd.sh");

    /// <summary>eng/lib/cri.sh: a private containerd with its CRI plugin, CNI and the pause image.</summary>
    public static string CriLibrary => Path.Combine(RepoRoot, "eng", "lib", "cri.sh");

    /// <summary>Where the CNI plugins are (Debian's containernetworking-plugins).</summary>
    public const string CniBinDirectory = "/usr/lib/cni";

    /// <summary>The CRI runtime handler of the runtime under test: ours as the README configures it, or runc.</summary>
    public static string CriRuntimeHandler => IsVmRuntime ? "csharp" : "runc";

    /// <summary>Null when the CRI tests can run here (everything the other tests need, plus CNI and gcc).</summary>
    public static string? CriSkipReason => SkipReason
        ?? (new[] { "bridge", "host-local", "loopback" }.FirstOrDefault(p => !File.Exists(Path.Combine(CniBinDirectory, p))) is { } missing
            ? $"CNI plugin {CniBinDirectory}/{missing} is missing (containernetworking-plugins; eng/build.sh installs it)"
            : FindOnPath("gcc") is null ? "gcc is not installed (it builds the pause image; eng/build.sh installs it)" : null);

    public static string ContainerdVersionsLibrary => Path.Combine(RepoRoot, "eng", "lib", "containerd-versions.sh");

    /// <summary>Where the harness leaves the private containerd's log (shim logs included) for later reading.</summary>
    public static string LogDirectory { get; } =
        Environment.GetEnvironmentVariable("E2E_LOG_DIR") is { Length: > 0 } d ? d : Path.Combine(Artifacts, "test-results", "e2e");

    /// <summary>Null when the end-to-end tests can run here; otherwise what is missing.</summary>
    public static string? SkipReason => LazySkipReason.Value;

    /// <summary>Null when VM-specific tests can run here.</summary>
    public static string? VmSkipReason => SkipReason
        ?? (IsVmRuntime ? null : $"checks the pod VM; E2E_RUNTIME={Runtime} is not a VM runtime");

    private static string? ComputeSkipReason()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "end-to-end tests need Linux";
        }

        if (!Environment.IsPrivilegedProcess)
        {
            return "end-to-end tests need root (they start a private containerd)";
        }

        foreach (var tool in new[] { "containerd", "ctr", "bash", "setsid" })
        {
            if (FindOnPath(tool) is null)
            {
                return $"{tool} is not installed (eng/build.sh installs it)";
            }
        }

        if (ContainerdBinDirectory is { } bin && !File.Exists(Path.Combine(bin, "containerd")))
        {
            return $"E2E_CONTAINERD={ContainerdSeries}: no containerd in {bin} (eng/test.sh fetches it: eng/lib/containerd-versions.sh ensure_containerd_versions)";
        }

        if (!File.Exists(ContainerdLibrary))
        {
            return $"{ContainerdLibrary} is missing";
        }

        if (!File.Exists("/bin/busybox"))
        {
            return "busybox-static is not installed (/bin/busybox missing; eng/build.sh installs it)";
        }

        if (!IsVmRuntime)
        {
            if (Runtime == RuncRuntime && (FindOnPath("runc") is null || FindOnPath("containerd-shim-runc-v2") is null))
            {
                return "runc or containerd-shim-runc-v2 is not installed";
            }

            return null;
        }

        foreach (var artifact in new[] { ShimBinary, GuestKernel, GuestInitrd, RuntimeConfig })
        {
            if (!File.Exists(artifact))
            {
                return $"{artifact} is missing: run eng/build.sh first";
            }
        }

        try
        {
            using var config = JsonDocument.Parse(File.ReadAllText(RuntimeConfig));
            if (config.RootElement.TryGetProperty("qemuPath", out var qemu) && qemu.GetString() is { } qemuPath && !File.Exists(qemuPath))
            {
                return $"QEMU ({qemuPath}, from {RuntimeConfig}) is not installed";
            }
        }
        catch (JsonException e)
        {
            return $"{RuntimeConfig} is not valid JSON: {e.Message}";
        }

        return null;
    }

    public static string? FindOnPath(string name)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        foreach (var dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(["/usr/sbin", "/sbin"]))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    private static string FindRepoRoot()
    {
        if (Environment.GetEnvironmentVariable("E2E_REPO_ROOT") is { Length: > 0 } root)
        {
            return root;
        }

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ShimV2.sln")))
            {
                return dir.FullName;
            }
        }

        return Directory.GetCurrentDirectory();
    }
}

/// <summary>An end-to-end test: skipped (with the reason) when this machine cannot run containerd scenarios.</summary>
public sealed class E2EFactAttribute : FactAttribute
{
    public E2EFactAttribute()
    {
        if (E2EEnvironment.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>An end-to-end theory, skipped like <see cref="E2EFactAttribute"/>.</summary>
public sealed class E2ETheoryAttribute : TheoryAttribute
{
    public E2ETheoryAttribute()
    {
        if (E2EEnvironment.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>An end-to-end test of something only a VM runtime does (the pod VM itself, our config file, our
/// documented limits); skipped against runc.</summary>
public sealed class VmFactAttribute : FactAttribute
{
    public VmFactAttribute()
    {
        if (E2EEnvironment.VmSkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>An end-to-end test through containerd's CRI plugin (needs CNI's plugins too).</summary>
public sealed class CriFactAttribute : FactAttribute
{
    public CriFactAttribute()
    {
        if (E2EEnvironment.CriSkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A CRI end-to-end test of the pod VM itself; skipped against runc.</summary>
public sealed class CriVmFactAttribute : FactAttribute
{
    public CriVmFactAttribute()
    {
        if ((E2EEnvironment.CriSkipReason ?? E2EEnvironment.VmSkipReason) is { } reason)
        {
            Skip = reason;
        }
    }
}
