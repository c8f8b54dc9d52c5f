using System.Globalization;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// The cycle tests' counts (issue 10, no leaks over time): how many cycles ran and what the host looked like before,
/// after the first and after the last. Appended to &lt;E2E log dir&gt;/leak-report.txt, which eng/soak.sh prints.
/// </summary>
public static class LeakReport
{
    public static string PathName => System.IO.Path.Combine(E2EEnvironment.LogDirectory, "leak-report.txt");

    /// <summary>A count from the environment (E2E_CYCLES_CTR, ...), else <paramref name="ciDefault"/>.</summary>
    public static int Cycles(string variable, int ciDefault) =>
        int.TryParse(Environment.GetEnvironmentVariable(variable), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : ciDefault;

    public static void Append(Scenario s, string line)
    {
        var stamped = $"{DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm:ss}Z containerd {s.Containerd.Version}: {line}";
        s.Write(stamped);
        try
        {
            Directory.CreateDirectory(E2EEnvironment.LogDirectory);
            File.AppendAllText(PathName, stamped + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            s.Write($"cannot write {PathName}: {e.Message}");
        }
    }
}
