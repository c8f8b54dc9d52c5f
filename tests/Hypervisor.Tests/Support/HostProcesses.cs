namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>Looks at /proc for processes, to prove none was leaked.</summary>
public static class HostProcesses
{
    /// <summary>Pids of live processes whose command line mentions <paramref name="fragment"/>.</summary>
    public static IReadOnlyList<int> WithCommandLineContaining(string fragment)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains(fragment, StringComparison.Ordinal) && !IsZombie(dir))
                {
                    pids.Add(pid);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile.
            }
        }

        return pids;
    }

    /// <summary>Whether the pid is still in the process table (a zombie counts: it was not reaped).</summary>
    public static bool Exists(int pid) => Directory.Exists($"/proc/{pid}");

    private static bool IsZombie(string procDir)
    {
        try
        {
            var stat = File.ReadAllText(Path.Combine(procDir, "stat"));
            var afterName = stat[(stat.LastIndexOf(')') + 2)..];
            return afterName.StartsWith('Z');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
