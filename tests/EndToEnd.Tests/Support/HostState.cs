using System.Globalization;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>A process seen in /proc.</summary>
public sealed record ProcInfo(int Pid, string Comm, IReadOnlyList<string> Argv)
{
    public string CommandLine => string.Join(' ', Argv);

    public long RssKiB => HostState.StatusField(Pid, "VmRSS");

    public override string ToString() => $"{Pid} {(CommandLine.Length > 200 ? CommandLine[..200] + "..." : CommandLine)}";
}

/// <summary>What a container leaves on the host: processes, mounts, sockets, directories. Read from /proc and the
/// file system directly, never through the runtime under test.</summary>
public static class HostState
{
    public static IReadOnlyList<ProcInfo> Processes()
    {
        var list = new List<ProcInfo>();
        var self = Environment.ProcessId;
        foreach (var dir in System.IO.Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid == self)
            {
                continue;
            }

            try
            {
                var raw = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (raw.Length == 0)
                {
                    continue; // kernel thread or zombie
                }

                var comm = File.ReadAllText(Path.Combine(dir, "comm")).Trim();
                list.Add(new ProcInfo(pid, comm, raw.TrimEnd('\0').Split('\0')));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile.
            }
        }

        return list;
    }

    /// <summary>Processes whose command line mentions <paramref name="id"/> (a shim's -id, QEMU's sandbox paths...),
    /// other than `ctr` commands of the test itself.</summary>
    public static IReadOnlyList<ProcInfo> ProcessesMentioning(string id) =>
        Processes().Where(p => p.Comm != "ctr" && p.Argv.Any(a => Mentions(a, id))).ToList();

    /// <summary>QEMU processes of one pod sandbox: their command line names /run/containerd-shim-csharp/&lt;id&gt;/.</summary>
    public static IReadOnlyList<ProcInfo> QemuProcesses(string sandboxId) =>
        Processes().Where(p => p.Comm.StartsWith("qemu-system", StringComparison.Ordinal)
            && p.Argv.Any(a => a.Contains($"{E2EEnvironment.SandboxRoot}/{sandboxId}/", StringComparison.Ordinal))).ToList();

    /// <summary>Shim processes serving <paramref name="id"/>: containerd-shim-* with "-id &lt;id&gt;" in argv.</summary>
    public static IReadOnlyList<ProcInfo> ShimProcesses(string id) =>
        Processes().Where(p => p.Argv.Count > 0 && Path.GetFileName(p.Argv[0]).StartsWith("containerd-shim", StringComparison.Ordinal)
            && p.Argv.Zip(p.Argv.Skip(1)).Any(pair => pair.First is "-id" or "--id" && pair.Second == id)).ToList();

    public static IReadOnlyList<string> MountsMentioning(string id) =>
        File.ReadAllLines("/proc/self/mountinfo").Where(l => Mentions(l, id)).ToList();

    public static string SandboxDirectory(string id) => Path.Combine(E2EEnvironment.SandboxRoot, id);

    /// <summary>Everything the container <paramref name="id"/> may have left behind; empty when clean.</summary>
    public static async Task<IReadOnlyList<string>> LeftoversAsync(PrivateContainerd containerd, string id)
    {
        var found = new List<string>();
        found.AddRange(ProcessesMentioning(id).Select(p => $"process {p}"));
        found.AddRange(MountsMentioning(id).Select(m => $"mount {m}"));
        var socket = containerd.ShimSocketPath(id);
        if (File.Exists(socket) || System.IO.Directory.Exists(socket))
        {
            found.Add($"shim socket {socket}");
        }

        if (System.IO.Directory.Exists(SandboxDirectory(id)))
        {
            found.Add($"sandbox directory {SandboxDirectory(id)}: [{string.Join(", ", SafeList(SandboxDirectory(id)))}]");
        }

        if (System.IO.Directory.Exists(containerd.BundleDirectory(id)))
        {
            found.Add($"bundle {containerd.BundleDirectory(id)}");
        }

        if ((await containerd.ContainerIdsAsync()).Contains(id))
        {
            found.Add($"container {id} still in `ctr containers ls`");
        }

        return found;
    }

    /// <summary>Waits (shims exit shortly after their last Delete/Shutdown) until nothing of <paramref name="id"/> is left.</summary>
    public static async Task AssertNothingLeftAsync(PrivateContainerd containerd, string id, TimeSpan? timeout = null)
    {
        await Eventually.GetAsync(
            async () =>
            {
                var left = await LeftoversAsync(containerd, id);
                return (left.Count == 0, left);
            },
            timeout ?? TimeSpan.FromSeconds(30),
            left => $"{id} left behind:\n  {string.Join("\n  ", left)}");
    }

    public static long StatusField(int pid, string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[1], CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
            // Gone.
        }

        return 0;
    }

    private static List<string> SafeList(string dir)
    {
        try
        {
            return System.IO.Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories).Take(20).ToList();
        }
        catch (IOException e)
        {
            return [e.Message];
        }
    }

    /// <summary>Whether <paramref name="text"/> names <paramref name="id"/> as a whole token (ids are unique random
    /// strings; "e2e-x-1" must not match "e2e-x-12").</summary>
    private static bool Mentions(string text, string id)
    {
        var i = 0;
        while ((i = text.IndexOf(id, i, StringComparison.Ordinal)) >= 0)
        {
            var before = i == 0 ? ' ' : text[i - 1];
            var afterIndex = i + id.Length;
            var after = afterIndex >= text.Length ? ' ' : text[afterIndex];
            if (!IsIdChar(before) && !IsIdChar(after))
            {
                return true;
            }

            i = afterIndex;
        }

        return false;
    }

    private static bool IsIdChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.';
}
