using System.Collections.Concurrent;
using System.Diagnostics;

namespace ShimV2.Hypervisor.Virtiofs;

/// <summary>Which virtiofsd implementation a binary is: their command lines differ.</summary>
public enum VirtiofsdFlavor
{
    /// <summary>QEMU's C virtiofsd (QEMU up to 7.2, Debian 12: /usr/lib/qemu/virtiofsd): FUSE-style <c>-o</c> options, seccomp always on.</summary>
    Qemu,

    /// <summary>The Rust virtiofsd (Debian 13's <c>virtiofsd</c> package: /usr/libexec/virtiofsd): long options.</summary>
    Rust,
}

/// <summary>A usable virtiofsd: where it is and which flavor.</summary>
public sealed record VirtiofsdBinary(string Path, VirtiofsdFlavor Flavor);

/// <summary>Finds the virtiofsd for a config and tells its flavor from its <c>--version</c> line.</summary>
public static class VirtiofsdLocator
{
    /// <summary>Where virtiofsd is looked for when virtiofsdPath is empty: Debian 13+'s Rust one, then Debian 12's C one.</summary>
    public static readonly IReadOnlyList<string> SearchPaths = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

    private static readonly ConcurrentDictionary<(string Path, DateTime Modified), VirtiofsdBinary> Known = new();

    /// <summary>The virtiofsd the config names (or the first found), checked to run here.</summary>
    /// <exception cref="HypervisorConfigException">None found, not executable, or it does not run (message says which and how to install it).</exception>
    public static VirtiofsdBinary Resolve(HypervisorConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var setting = config.VirtiofsdPath.Length > 0 ? "virtiofsdPath" : "sharedFs";
        var candidates = config.VirtiofsdPath.Length > 0 ? [config.VirtiofsdPath] : SearchPaths;
        string? firstError = null;
        foreach (var path in candidates)
        {
            if (!File.Exists(path))
            {
                continue;
            }

            if (Probe(path, out var error) is { } binary)
            {
                return binary;
            }

            firstError ??= error;
        }

        throw HypervisorConfigValidator.Error(
            config,
            firstError ?? $"sharedFs is virtio-fs but virtiofsd was not found (looked for {string.Join(", ", candidates)}; {InstallHint})",
            setting);
    }

    /// <summary>How to get virtiofsd on Debian.</summary>
    public const string InstallHint = "Debian 12: apt-get install qemu-system-common; Debian 13 and later: apt-get install virtiofsd";

    /// <summary>The binary at <paramref name="path"/> when it runs; null with the reason otherwise. Cached per file version.</summary>
    public static VirtiofsdBinary? Probe(string path, out string? error)
    {
        error = null;
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) == 0)
        {
            error = $"virtiofsd is not executable: {path}";
            return null;
        }

        var key = (path, File.GetLastWriteTimeUtc(path));
        if (Known.TryGetValue(key, out var known))
        {
            return known;
        }

        var (code, output) = RunVersion(path);
        if (code != 0)
        {
            // E.g. Debian 13's build copied onto Debian 12: "GLIBC_2.39 not found".
            error = $"virtiofsd {path} does not run here (exit code {code}): {output}";
            return null;
        }

        var binary = new VirtiofsdBinary(path, FlavorOf(output));
        Known[key] = binary;
        return binary;
    }

    /// <summary>QEMU's C virtiofsd prints "virtiofsd version 7.2.x (...)", the Rust one "virtiofsd 1.x.y".</summary>
    public static VirtiofsdFlavor FlavorOf(string versionOutput)
    {
        ArgumentNullException.ThrowIfNull(versionOutput);
        return versionOutput.TrimStart().StartsWith("virtiofsd version ", StringComparison.Ordinal) ? VirtiofsdFlavor.Qemu : VirtiofsdFlavor.Rust;
    }

    private static (int Code, string Output) RunVersion(string path)
    {
        var info = new ProcessStartInfo(path)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.ArgumentList.Add("--version");
        try
        {
            using var process = Process.Start(info)!;
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                process.Kill();
                process.WaitForExit();
                return (-1, "no answer to --version within 10 s");
            }

            var text = (stdout.Result + "\n" + stderr.Result).Trim();
            var firstLine = text.Split('\n', 2)[0].Trim();
            return (process.ExitCode, firstLine);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}
