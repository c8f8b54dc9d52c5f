using System.Globalization;

namespace ShimV2.Hypervisor;

/// <summary>
/// Who a QEMU process is, beyond its pid (which the kernel reuses): its start time in clock ticks after boot
/// (field 22 of /proc/&lt;pid&gt;/stat) and its executable. The shim records it in the VM directory next to QEMU's
/// own pid file, so a later `delete` (after the shim died) stops that process and never a stranger with its pid.
/// </summary>
public sealed record QemuIdentity(int Pid, ulong StartTime, string Executable)
{
    public const string FileName = "qemu.identity";

    /// <summary>The identity of a live process, or null when it is gone (or a zombie).</summary>
    public static QemuIdentity? Capture(int pid, string procRoot = "/proc")
    {
        var stat = ProcStat.Read(pid, procRoot);
        if (stat is not { Zombie: false })
        {
            return null;
        }

        return ReadExecutable(pid, procRoot) is { } exe ? new QemuIdentity(pid, stat.Value.StartTime, exe) : null;
    }

    /// <summary>One line, "pid starttime executable", written beside the pid file.</summary>
    public void Write(string path)
    {
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, string.Create(CultureInfo.InvariantCulture, $"{Pid} {StartTime} {Executable}\n"));
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The recorded identity, or null when the file is missing or not ours.</summary>
    public static QemuIdentity? Read(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path).TrimEnd('\n');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        var parts = text.Split(' ', 3);
        return parts.Length == 3
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
            && ulong.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var start)
            && parts[2].Length > 0
                ? new QemuIdentity(pid, start, parts[2])
                : null;
    }

    /// <summary>/proc/&lt;pid&gt;/exe, or null when unreadable (gone, or a kernel thread).</summary>
    public static string? ReadExecutable(int pid, string procRoot = "/proc")
    {
        try
        {
            return new FileInfo(Path.Combine(procRoot, pid.ToString(CultureInfo.InvariantCulture), "exe")).LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>/proc/&lt;pid&gt;/cmdline split at its NULs, or null when gone.</summary>
    public static IReadOnlyList<string>? ReadCommandLine(int pid, string procRoot = "/proc")
    {
        try
        {
            var raw = File.ReadAllText(Path.Combine(procRoot, pid.ToString(CultureInfo.InvariantCulture), "cmdline"));
            return raw.TrimEnd('\0').Split('\0');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

/// <summary>The two fields of /proc/&lt;pid&gt;/stat that identity and liveness need.</summary>
public readonly record struct ProcStat(bool Zombie, ulong StartTime)
{
    /// <summary>Null when the process does not exist (or the file does not parse).</summary>
    public static ProcStat? Read(int pid, string procRoot = "/proc")
    {
        string text;
        try
        {
            text = File.ReadAllText(Path.Combine(procRoot, pid.ToString(CultureInfo.InvariantCulture), "stat"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        return Parse(text);
    }

    /// <summary>The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.</summary>
    public static ProcStat? Parse(string stat)
    {
        var close = stat.LastIndexOf(')');
        if (close < 0)
        {
            return null;
        }

        // After ')': field 3 (state) is index 0, field 22 (starttime) index 19.
        var fields = stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length < 20 || !ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var start))
        {
            return null;
        }

        return new ProcStat(fields[0] is "Z" or "X", start);
    }
}
