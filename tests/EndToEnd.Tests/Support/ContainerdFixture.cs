using System.Globalization;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// One private containerd for the whole end-to-end collection, started on first use (so a run where every test
/// skips starts nothing) with eng/lib/containerd.sh's containerd_start + import_busybox, and stopped with its
/// containerd_stop (kills what is left: tasks, shims, QEMUs; unmounts; removes the temp dir). Its directory is
/// /tmp/csharp-e2e.*, owned by this test host's pid, so eng/test.sh's containerd_reap_stale cleans it up if this
/// process is killed (as does the next start of this fixture). The log (with the shims' logs) is copied to artifacts/test-results/e2e/ at the end.
/// </summary>
public sealed class ContainerdFixture : IAsyncLifetime
{
    private readonly object _lock = new();
    private Task<PrivateContainerd>? _start;
    private PrivateContainerd? _containerd;

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>The running containerd; the first call starts it. A failed start fails every later call the same way.</summary>
    public async Task<PrivateContainerd> GetAsync()
    {
        Task<PrivateContainerd> start;
        lock (_lock)
        {
            start = _start ??= StartAsync();
        }

        try
        {
            return _containerd = await start;
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"the private containerd did not start: {e.Message}", e);
        }
    }

    public async Task DisposeAsync()
    {
        if (_containerd is { } c)
        {
            await StopAsync(c, E2EEnvironment.Runtime.Replace("io.containerd.", "", StringComparison.Ordinal));
        }
    }

    /// <summary>Copies <paramref name="c"/>'s log to artifacts/test-results/e2e/containerd-&lt;version&gt;-&lt;what&gt;.log
    /// and stops it with containerd_stop.</summary>
    internal static async Task StopAsync(PrivateContainerd c, string what)
    {
        try
        {
            System.IO.Directory.CreateDirectory(E2EEnvironment.LogDirectory);
            File.Copy(c.LogPath, Path.Combine(E2EEnvironment.LogDirectory, $"containerd-{c.Version}-{what}.log"), overwrite: true);
        }
        catch (IOException)
        {
            // Diagnostics only.
        }
        catch (UnauthorizedAccessException)
        {
            // Diagnostics only.
        }

        await HostProcess.RunAsync(
            "bash",
            ["-c", "source \"$1\" && CTRD_DIR=\"$2\" CTRD_SOCK=\"$3\" CTRD_PID=\"$4\" containerd_stop", "bash",
                E2EEnvironment.ContainerdLibrary, c.Directory, c.Socket, c.Pid.ToString(CultureInfo.InvariantCulture)],
            TimeSpan.FromMinutes(3));
    }

    private static Task<PrivateContainerd> StartAsync() =>
        StartAsync(E2EEnvironment.ContainerdLibrary, "containerd_start\nimport_busybox", "default");

    /// <summary>Starts a private containerd of the version under test: sources <paramref name="library"/> (an
    /// eng/lib script that sources containerd.sh), runs <paramref name="start"/> (which must end up with
    /// containerd_start's variables set), and describes it with <paramref name="ns"/> as the namespace its
    /// containers are in.</summary>
    internal static async Task<PrivateContainerd> StartAsync(string library, string start, string ns)
    {
        var env = new Dictionary<string, string>
        {
            ["CTRD_DIR_TEMPLATE"] = "/tmp/csharp-e2e.XXXXXX",
            ["CTRD_OWNER_PID"] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture),
            // debug: containerd then starts shims with -debug, and their logs (copied from the log FIFO) say more.
            ["CTRD_LOG_LEVEL"] = "debug",
            ["ARTIFACTS"] = E2EEnvironment.Artifacts,
            ["E2E_CONTAINERD"] = E2EEnvironment.ContainerdSeries,
        };
        const string script = """
            set -e
            source "$1"
            source "$2"
            if [[ "$E2E_CONTAINERD" != 1.6 ]]; then CTRD_BIN_DIR="$(containerd_bin_dir "$E2E_CONTAINERD")"; fi
            containerd_reap_stale
            trap '[[ -z "${CTRD_DIR:-}" ]] || printf "CTRD_DIR=%s\nCTRD_SOCK=%s\nCTRD_PID=%s\nCTRD_LOG=%s\nCTRD_CTR=%s\nCTRD_VERSION=%s\n" "$CTRD_DIR" "$CTRD_SOCK" "$CTRD_PID" "$CTRD_LOG" "$CTRD_CTR" "$CTRD_VERSION"' EXIT
            eval "$3"
            echo IMPORTED
            """;
        var r = await HostProcess.RunAsync("bash", ["-c", script, "bash", library, E2EEnvironment.ContainerdVersionsLibrary, start],
            TimeSpan.FromMinutes(3), new ProcessOptions { Environment = env });
        var values = r.Stdout.Split('\n')
            .Select(l => l.Split('=', 2))
            .Where(kv => kv.Length == 2)
            .ToDictionary(kv => kv[0], kv => kv[1]);
        PrivateContainerd? c = null;
        if (values.TryGetValue("CTRD_DIR", out var dir) && values.TryGetValue("CTRD_SOCK", out var sock)
            && values.TryGetValue("CTRD_PID", out var pid) && values.TryGetValue("CTRD_LOG", out var log)
            && values.TryGetValue("CTRD_CTR", out var ctr) && values.TryGetValue("CTRD_VERSION", out var version))
        {
            c = new PrivateContainerd(dir, sock, int.Parse(pid, CultureInfo.InvariantCulture), log, ctr, version, ns);
        }

        if (r.ExitCode != 0 || c is null || !r.Stdout.Contains("IMPORTED", StringComparison.Ordinal))
        {
            if (c is not null)
            {
                await StopAsync(c, "failed-start");
            }

            throw new InvalidOperationException($"starting the private containerd ({Path.GetFileName(library)}: {start.Replace('\n', ';')}) failed: {r}");
        }

        return c;
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ContainerdCollection : ICollectionFixture<ContainerdFixture>
{
    /// <summary>Every end-to-end test class is in this one collection: they share the containerd and run one at a
    /// time (2 cores, TCG-emulated VMs).</summary>
    public const string Name = "containerd";
}
