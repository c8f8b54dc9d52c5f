namespace ShimV2.Cli.Check;

/// <summary>
/// The image.manifest guest-agent/image/build.sh writes beside the kernel (eng/install.sh installs it there too):
/// which kernel the guest image has, our own build ("custom") or Debian's ("generic"), and its release.
/// </summary>
internal static class GuestImageManifest
{
    public const string FileName = "image.manifest";

    /// <summary>"custom kernel 6.1.N-csharp", or null when the kernel has no readable manifest beside it.</summary>
    public static string? DescribeKernel(string kernelPath)
    {
        var dir = Path.GetDirectoryName(kernelPath);
        if (string.IsNullOrEmpty(dir))
        {
            return null;
        }

        string[] lines;
        try
        {
            lines = File.ReadAllLines(Path.Combine(dir, FileName));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        var release = Value(lines, "kernel");
        if (release is null)
        {
            return null;
        }

        // Images built before the custom kernel existed carried Debian's kernel and no guest-kernel line.
        return $"{Value(lines, "guest-kernel") ?? "generic"} kernel {release}";
    }

    private static string? Value(string[] lines, string key) =>
        lines.FirstOrDefault(l => l.StartsWith(key + ": ", StringComparison.Ordinal))?[(key.Length + 2)..].Trim();
}
