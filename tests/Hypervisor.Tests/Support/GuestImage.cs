using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>
/// A tiny guest for real boots: the host's Debian kernel and an initramfs built here from busybox-static and the
/// kernel's own virtio modules. Its /init prints the real init's first line (the sign of life a KVM boot is watched
/// for), then <see cref="ReadyMarker"/> and the kernel version on the console,
/// writes <see cref="ShareFile"/> into a 9p share tagged <see cref="ShareTag"/> if there is one, then serves the
/// virtio-serial port agent.0: on each connection it sends <see cref="HelloPrefix"/> + version and echoes what it reads.
/// </summary>
public sealed class GuestImage
{
    public const string QemuPath = HypervisorConfig.DefaultQemuPath;
    public const string BusyboxPath = "/bin/busybox";
    public const string ReadyMarker = "GUEST-READY";
    public const string HelloPrefix = "AGENT-HELLO";
    public const string ShareTag = "csharpshare";
    public const string ShareFile = "guest-wrote.txt";
    public const string SetupScript = "tests/Hypervisor.Tests/setup-test-deps.sh";

    private static readonly string[] Modules = ["virtio_pci", "virtio_console", "9pnet_virtio", "9p"];

    private static readonly Lazy<(string? Kernel, string? Version, string? SkipReason)> Probe = new(ProbeHost);
    private static readonly Lazy<Task<GuestImage>> Shared = new(BuildAsync);

    private GuestImage(string kernelPath, string initrdPath, string kernelVersion)
    {
        KernelPath = kernelPath;
        InitrdPath = initrdPath;
        KernelVersion = kernelVersion;
    }

    public string KernelPath { get; }

    public string InitrdPath { get; }

    public string KernelVersion { get; }

    /// <summary>Why real-QEMU tests cannot run here, or null when they can.</summary>
    public static string? SkipReason => Probe.Value.SkipReason;

    /// <summary>The image, built once per test run (and cached in the temp directory across runs).</summary>
    public static Task<GuestImage> GetAsync() => Shared.Value;

    public const string InitScript = """
        #!/bin/busybox sh
        /bin/busybox --install -s /bin
        mkdir -p /proc /sys /dev /share /tmp
        mount -t proc proc /proc
        mount -t sysfs sysfs /sys
        mount -t devtmpfs devtmpfs /dev
        exec </dev/console >/dev/console 2>&1
        echo "csharp-init: starting (test image)"
        for m in $(cat /modules.order); do insmod "/lib/modules/$m" || echo "GUEST-ERROR insmod $m"; done
        echo "GUEST-READY $(uname -r)"
        if mount -t 9p -o trans=virtio,version=9p2000.L csharpshare /share 2>/dev/null; then
          echo "share $(uname -r)" > /share/guest-wrote.txt
        fi
        mkdir -p /dev/virtio-ports
        while [ ! -e /dev/virtio-ports/agent.0 ]; do
          for p in /sys/class/virtio-ports/*; do
            if [ -e "$p/name" ] && [ "$(cat "$p/name")" = agent.0 ]; then ln -sf "/dev/${p##*/}" /dev/virtio-ports/agent.0; fi
          done
          [ -e /dev/virtio-ports/agent.0 ] || sleep 0.1
        done
        while true; do
          exec 3<>/dev/virtio-ports/agent.0
          echo "AGENT-HELLO $(uname -r)" >&3
          cat <&3 >&3
          exec 3>&-
        done

        """;

    private static (string?, string?, string?) ProbeHost()
    {
        if (!File.Exists(QemuPath))
        {
            return (null, null, $"{QemuPath} is not installed (apt-get install qemu-system-x86, or run {SetupScript})");
        }

        var kernel = Directory.Exists("/boot")
            ? Directory.GetFiles("/boot", "vmlinuz-*")
                .Select(k => (Path: k, Version: Path.GetFileName(k)["vmlinuz-".Length..]))
                .Where(k => File.Exists($"/lib/modules/{k.Version}/modules.dep"))
                .OrderByDescending(k => k.Version, StringComparer.Ordinal)
                .FirstOrDefault()
            : default;
        if (kernel.Path is null)
        {
            return (null, null, $"no /boot/vmlinuz-* with modules under /lib/modules (apt-get install linux-image-amd64, or run {SetupScript})");
        }

        if (!IsStaticElf(BusyboxPath))
        {
            return (null, null, $"{BusyboxPath} is missing or not static (apt-get install busybox-static, or run {SetupScript})");
        }

        if (FindInPath("cpio") is null)
        {
            return (null, null, $"cpio is not installed (apt-get install cpio, or run {SetupScript})");
        }

        try
        {
            using var _ = File.OpenRead(kernel.Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, null, $"cannot read {kernel.Path}: {e.Message}");
        }

        return (kernel.Path, kernel.Version, null);
    }

    private static async Task<GuestImage> BuildAsync()
    {
        var (kernel, version, skip) = Probe.Value;
        if (skip is not null)
        {
            throw new InvalidOperationException(skip);
        }

        var modules = ModuleClosure(version!);
        var key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
            string.Join('\n', [version!, InitScript, .. modules, File.GetLastWriteTimeUtc(BusyboxPath).Ticks.ToString(System.Globalization.CultureInfo.InvariantCulture)]))))[..16];
        var cacheDir = Path.Combine(Path.GetTempPath(), $"csharp-shim-hvtest-image-{key}");
        var initrd = Path.Combine(cacheDir, "initrd.img");
        if (File.Exists(initrd))
        {
            return new GuestImage(kernel!, initrd, version!);
        }

        var staging = Directory.CreateTempSubdirectory("hvt-image-").FullName;
        try
        {
            var root = Path.Combine(staging, "root");
            Directory.CreateDirectory(Path.Combine(root, "bin"));
            Directory.CreateDirectory(Path.Combine(root, "lib", "modules"));
            File.Copy(BusyboxPath, Path.Combine(root, "bin", "busybox"));
            File.SetUnixFileMode(Path.Combine(root, "bin", "busybox"), (UnixFileMode)0b111_101_101);
            foreach (var module in modules)
            {
                File.Copy(Path.Combine($"/lib/modules/{version}", module), Path.Combine(root, "lib", "modules", Path.GetFileName(module)));
            }

            await File.WriteAllLinesAsync(Path.Combine(root, "modules.order"), modules.Select(Path.GetFileName)!);
            var init = Path.Combine(root, "init");
            await File.WriteAllTextAsync(init, InitScript.Replace("\r\n", "\n", StringComparison.Ordinal));
            File.SetUnixFileMode(init, (UnixFileMode)0b111_101_101);

            var archive = Path.Combine(staging, "initrd.img");
            await RunCpioAsync(root, archive);

            // Publish atomically: parallel test runs may race to build the same image.
            Directory.CreateDirectory(cacheDir);
            var temp = Path.Combine(cacheDir, $"initrd.{Environment.ProcessId}.tmp");
            File.Copy(archive, temp, overwrite: true);
            File.Move(temp, initrd, overwrite: true);
            return new GuestImage(kernel!, initrd, version!);
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>The wanted modules and their dependencies (from modules.dep), each after what it needs.</summary>
    internal static IReadOnlyList<string> ModuleClosure(string version)
    {
        var deps = new Dictionary<string, string[]>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines($"/lib/modules/{version}/modules.dep"))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                deps[line[..colon]] = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            }
        }

        var ordered = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Visit(string module)
        {
            if (!seen.Add(module))
            {
                return;
            }

            foreach (var dep in deps.GetValueOrDefault(module, []))
            {
                Visit(dep);
            }

            ordered.Add(module);
        }

        foreach (var name in Modules)
        {
            var path = deps.Keys.FirstOrDefault(k => Path.GetFileName(k) == name + ".ko")
                ?? throw new InvalidOperationException(
                    $"module {name}.ko not found in /lib/modules/{version}/modules.dep (compressed modules are not supported by this test image)");
            Visit(path);
        }

        return ordered;
    }

    private static async Task RunCpioAsync(string root, string archive)
    {
        var entries = new List<string> { "." };
        entries.AddRange(Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(root, p))
            .Order(StringComparer.Ordinal));

        var info = new ProcessStartInfo("cpio")
        {
            WorkingDirectory = root,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("-o");
        info.ArgumentList.Add("-H");
        info.ArgumentList.Add("newc");
        info.ArgumentList.Add("--quiet");
        info.ArgumentList.Add("--owner=0:0");
        using var cpio = Process.Start(info)!;
        await using (var output = File.Create(archive))
        {
            var copy = cpio.StandardOutput.BaseStream.CopyToAsync(output);
            var errors = cpio.StandardError.ReadToEndAsync();
            await cpio.StandardInput.WriteAsync(string.Join('\n', entries) + "\n");
            cpio.StandardInput.Close();
            await copy;
            await cpio.WaitForExitAsync();
            if (cpio.ExitCode != 0)
            {
                throw new InvalidOperationException($"cpio failed ({cpio.ExitCode}): {await errors}");
            }
        }
    }

    private static bool IsStaticElf(string path)
    {
        // A dynamic executable names its loader ("/lib64/ld-linux-x86-64.so.2") in PT_INTERP near the start.
        try
        {
            var head = new byte[8192];
            using var file = File.OpenRead(path);
            var n = file.Read(head);
            return n > 4 && head[0] == 0x7F && head[1] == (byte)'E'
                && head.AsSpan(0, n).IndexOf("/ld-linux"u8) < 0 && head.AsSpan(0, n).IndexOf("ld-musl"u8) < 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static string? FindInPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
}
