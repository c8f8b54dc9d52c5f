namespace ShimV2.Hypervisor;

/// <summary>
/// Finds why a guest died in its console log. The guest kernel runs with <c>panic=1</c> and QEMU with
/// <c>-no-reboot</c>, so a panicking guest makes QEMU exit a second later; the one line that explains it is the
/// kernel's "Kernel panic - not syncing: REASON", followed by a stack dump that pushes it out of a short tail.
/// </summary>
public static class GuestPanic
{
    public const string Marker = "Kernel panic - not syncing";

    /// <summary>How much of the end of the console is searched: a panic's dump is a few KiB.</summary>
    private const int TailBytes = 64 * 1024;

    /// <summary>The last panic line of the console log ("Kernel panic - not syncing: sysrq triggered crash"), without
    /// the kernel's timestamp prefix; null when there is none or the log cannot be read.</summary>
    public static string? FindInConsole(string consoleLogPath)
    {
        try
        {
            using var file = new FileStream(consoleLogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var start = Math.Max(0, file.Length - TailBytes);
            file.Position = start;
            var buffer = new byte[file.Length - start];
            file.ReadExactly(buffer);
            return FindInText(System.Text.Encoding.UTF8.GetString(buffer));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The last panic line of <paramref name="console"/>, from the marker on; null when there is none.
    /// The kernel closes a panic with "---[ end Kernel panic - not syncing: ... ]---": that repeats the reason and is
    /// used only when the opening line is gone.</summary>
    public static string? FindInText(string console)
    {
        ArgumentNullException.ThrowIfNull(console);
        string? closing = null;
        foreach (var raw in console.Split('\n').Reverse())
        {
            var i = raw.IndexOf(Marker, StringComparison.Ordinal);
            if (i < 0)
            {
                continue;
            }

            var line = new string(raw[i..].Where(c => !char.IsControl(c)).ToArray()).Trim();
            if (raw.Contains("---[ end", StringComparison.Ordinal))
            {
                closing ??= line.EndsWith("]---", StringComparison.Ordinal) ? line[..^4].TrimEnd() : line;
                continue;
            }

            return line;
        }

        return closing;
    }
}
