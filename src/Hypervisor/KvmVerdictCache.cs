using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ShimV2.Hypervisor;

/// <summary>Identifies what a verdict is about: this host boot, this guest kernel, this QEMU.</summary>
internal sealed record KvmVerdictKey(string BootId, string Kernel, string Qemu)
{
    /// <summary>The file name for this key: a hash, so any path or boot id makes a safe name.</summary>
    public string FileName => Convert.ToHexStringLower(Sha256.HashData(Encoding.UTF8.GetBytes($"{BootId}\n{Kernel}\n{Qemu}")))[..32] + ".json";

    /// <summary>path, size and mtime: cheap to take at every pod start (no hashing of the kernel), and a
    /// replaced kernel or QEMU gets a fresh verdict.</summary>
    public static string Identify(string path)
    {
        var info = new FileInfo(path);
        return string.Create(CultureInfo.InvariantCulture, $"{path}|{info.Length}|{info.LastWriteTimeUtc.Ticks}");
    }
}

/// <summary>
/// Remembers whether a guest kernel runs under this host's KVM, per host boot, under /run (gone at reboot, as
/// the verdict should be). One small JSON file per key, written atomically (temp file + rename); a file that
/// does not parse or names another key is ignored, and the next verdict replaces it.
/// </summary>
internal sealed class KvmVerdictCache
{
    /// <summary>Beside the sandboxes' directories; a containerd id cannot start with a dot, so no sandbox can be named so.</summary>
    public const string DefaultDirectory = "/run/containerd-shim-csharp/.accel";
    public const string BootIdPath = "/proc/sys/kernel/random/boot_id";
    private const int FormatVersion = 1;

    public static readonly KvmVerdictCache Default = new(DefaultDirectory);

    private readonly string bootIdPath;

    public KvmVerdictCache(string directory, string bootIdPath = BootIdPath)
    {
        Directory = directory;
        this.bootIdPath = bootIdPath;
    }

    public string Directory { get; }

    /// <summary>The key for this config on this host boot; null when the boot id, kernel or QEMU cannot be read
    /// (then nothing is cached: a verdict without its boot id could outlive a reboot).</summary>
    public KvmVerdictKey? KeyFor(HypervisorConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        try
        {
            var bootId = File.ReadAllText(bootIdPath).Trim();
            if (bootId.Length == 0 || !File.Exists(config.KernelPath) || !File.Exists(config.QemuPath))
            {
                return null;
            }

            return new KvmVerdictKey(bootId, KvmVerdictKey.Identify(config.KernelPath), KvmVerdictKey.Identify(config.QemuPath));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public string PathFor(KvmVerdictKey key) => Path.Combine(Directory, key.FileName);

    /// <summary>The verdict for <paramref name="key"/>, or null when there is none or the file is unreadable or corrupt.</summary>
    public KvmVerdict? Read(KvmVerdictKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        try
        {
            var file = JsonSerializer.Deserialize(File.ReadAllBytes(PathFor(key)), KvmVerdictJsonContext.Default.KvmVerdictFile);
            if (file is null || file.Version != FormatVersion || file.BootId != key.BootId || file.Kernel != key.Kernel
                || file.Qemu != key.Qemu || string.IsNullOrWhiteSpace(file.Reason))
            {
                return null;
            }

            return new KvmVerdict(file.KvmWorks, file.Reason);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    /// <summary>Records a verdict; returns why it could not (the caller logs it and goes on), else null.</summary>
    public string? Write(KvmVerdictKey key, KvmVerdict verdict)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(verdict);
        var path = PathFor(key);
        var temp = Path.Combine(Directory, $".{key.FileName}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            var file = new KvmVerdictFile(FormatVersion, key.BootId, key.Kernel, key.Qemu, verdict.KvmWorks, verdict.Reason, DateTimeOffset.UtcNow);
            File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(file, KvmVerdictJsonContext.Default.KvmVerdictFile));
            File.Move(temp, path, overwrite: true);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
                // The write failed already; the message below says why.
            }

            return $"cannot record the KVM verdict in {path}: {e.Message}";
        }
    }
}

internal sealed record KvmVerdictFile(int Version, string BootId, string Kernel, string Qemu, bool KvmWorks, string Reason, DateTimeOffset Recorded);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true, RespectNullableAnnotations = true)]
[JsonSerializable(typeof(KvmVerdictFile))]
internal sealed partial class KvmVerdictJsonContext : JsonSerializerContext;
