using System.Diagnostics;

namespace ShimV2.Netlink.Tests;

/// <summary>Skips unless root with iproute2: the tests make network namespaces, veths and taps.</summary>
public sealed class NetnsFactAttribute : FactAttribute
{
    public NetnsFactAttribute()
    {
        if (Environment.UserName != "root")
        {
            Skip = "needs root: the test creates a network namespace";
        }
        else if (!File.Exists("/usr/sbin/ip") && !File.Exists("/sbin/ip") && !File.Exists("/usr/bin/ip"))
        {
            Skip = "needs iproute2's `ip` to set up its network namespace";
        }
    }
}

/// <summary>A named network namespace (ip netns add), deleted with everything in it on dispose.</summary>
public sealed class TestNamespace : IDisposable
{
    public TestNamespace()
    {
        Name = $"csharp-nl-{Environment.ProcessId}-{Guid.NewGuid():N}"[..28];
        Ip("netns", "add", Name);
    }

    public string Name { get; }

    public string Path => $"/var/run/netns/{Name}";

    /// <summary>Runs `ip ARGS` (in this namespace with "-n NAME" first), returning stdout; throws on failure.</summary>
    public static string Ip(params string[] args) => Run("ip", args);

    public string InNs(string tool, params string[] args) => Run(tool, ["-n", Name, .. args]);

    public void Dispose() => Ip("netns", "delete", Name);

    private static string Run(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEnd();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? stdout : throw new InvalidOperationException($"{file} {string.Join(' ', args)}: {stderr}");
    }
}
