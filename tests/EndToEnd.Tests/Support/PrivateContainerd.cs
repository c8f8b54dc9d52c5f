using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// A private containerd (own socket, root and state under /tmp/csharp-e2e.*, never the system one) started with
/// eng/lib/containerd.sh, with artifacts/bin first on its PATH so it finds containerd-shim-csharp-v1, and the
/// locally built busybox image imported. Everything is driven through the real `ctr`.
/// </summary>
public sealed class PrivateContainerd
{
    internal PrivateContainerd(string directory, string socket, int pid, string logPath, string ctrPath, string version, string @namespace = "default")
    {
        Namespace = @namespace;
        Directory = directory;
        Socket = socket;
        Pid = pid;
        LogPath = logPath;
        CtrPath = ctrPath;
        Version = version;
    }

    /// <summary>The `ctr` of this containerd's version (their flags and output differ).</summary>
    public string CtrPath { get; }

    /// <summary>What `containerd --version` says, e.g. "1.7.24".</summary>
    public string Version { get; }

    public string Directory { get; }

    public string Socket { get; }

    /// <summary>containerd's pid; a new one after <see cref="RestartAsync"/>.</summary>
    public int Pid { get; private set; }

    public string LogPath { get; }

    /// <summary>The containerd namespace the tests' containers are in: "default", or "k8s.io" for CRI's.</summary>
    public string Namespace { get; }

    /// <summary>Where the test output of the current test goes (set by each test's scenario).</summary>
    public Action<string>? Log { get; set; }

    public string BundleDirectory(string id) => Path.Combine(Directory, "state", "io.containerd.runtime.v2.task", Namespace, id);

    /// <summary>The shim socket by runc's convention: /run/containerd/s/sha256(path.Join(address, ns, id)).</summary>
    public string ShimSocketPath(string groupId) =>
        Path.Combine(E2EEnvironment.ShimSocketDirectory,
            Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{Socket}/{Namespace}/{groupId}"))));

    public IEnumerable<string> CtrPrefix => ["--address", Socket, "--namespace", Namespace];

    public Task<ProcessResult> CtrAsync(IEnumerable<string> args, TimeSpan? timeout = null, ProcessOptions? options = null, bool log = true) =>
        HostProcess.RunAsync(CtrPath, CtrPrefix.Concat(args), timeout ?? Ctr.CtrTimeout, options, log ? Log : null);

    /// <summary>Runs ctr and asserts it succeeded.</summary>
    public async Task<ProcessResult> CtrOkAsync(IEnumerable<string> args, TimeSpan? timeout = null, ProcessOptions? options = null)
    {
        var r = await CtrAsync(args, timeout, options);
        Assert.True(r.ExitCode == 0, $"ctr failed: {r}");
        return r;
    }

    public HostProcess StartCtr(IEnumerable<string> args, ProcessOptions? options = null, bool log = true) =>
        HostProcess.Start(CtrPath, CtrPrefix.Concat(args), options, log ? Log : null);

    /// <summary>The task's status in `ctr task ls` (RUNNING, PAUSED, STOPPED, CREATED...), or null when it has no task.</summary>
    public async Task<(string? Status, int Pid)> TaskStatusAsync(string id)
    {
        var r = await CtrAsync(["tasks", "ls"], log: false);
        Assert.True(r.ExitCode == 0, $"ctr tasks ls failed: {r}");
        foreach (var line in r.Stdout.Split('\n').Skip(1))
        {
            var cols = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (cols.Length >= 3 && cols[0] == id)
            {
                return (cols[2], int.Parse(cols[1], CultureInfo.InvariantCulture));
            }
        }

        return (null, 0);
    }

    public async Task<IReadOnlyList<string>> ContainerIdsAsync()
    {
        var r = await CtrAsync(["containers", "ls", "-q"], log: false);
        Assert.True(r.ExitCode == 0, $"ctr containers ls failed: {r}");
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>Best effort: SIGKILL the task, delete it and the container. For cleanup after a failed scenario.</summary>
    public async Task ForceRemoveAsync(string id)
    {
        var timeout = TimeSpan.FromSeconds(30);
        try
        {
            if (!(await ContainerIdsAsync()).Contains(id))
            {
                return;
            }

            await CtrAsync(["tasks", "kill", "-s", "SIGKILL", "--all", id], timeout);
            await Eventually.TrueAsync(async () => (await TaskStatusAsync(id)).Status is null or "STOPPED", timeout, () => $"{id} did not stop");
        }
        catch (Exception e) when (e is TimeoutException or Xunit.Sdk.XunitException)
        {
            Log?.Invoke($"cleanup of {id}: {e.Message}");
        }

        foreach (var args in new[] { new[] { "tasks", "delete", "-f", id }, ["containers", "delete", id] })
        {
            try
            {
                await CtrAsync(args, timeout);
            }
            catch (TimeoutException e)
            {
                Log?.Invoke($"cleanup of {id}: {e.Message}");
            }
        }
    }

    /// <summary>Restarts this containerd as a node's `systemctl restart containerd` does: SIGTERM (its shims and their
    /// VMs live on), then the same binary on the same config, root, state and log (eng/lib/containerd.sh's
    /// containerd_restart). Returns once the new one answers.</summary>
    public Task RestartAsync() => RunLifecycleAsync("containerd_restart", started: true);

    /// <summary>The first half of <see cref="RestartAsync"/>: containerd stopped (SIGTERM) and gone; its shims live on
    /// without it until <see cref="RelaunchAsync"/>.</summary>
    public Task HaltAsync() => RunLifecycleAsync("containerd_halt", started: false);

    /// <summary>The second half of <see cref="RestartAsync"/>: the same containerd again (at <paramref name="logLevel"/>
    /// instead of the config's when given); returns once it answers.</summary>
    public Task RelaunchAsync(string? logLevel = null) =>
        RunLifecycleAsync("containerd_relaunch", started: true, logLevel);

    /// <summary>Whether this containerd's process is alive.</summary>
    public bool IsRunning
    {
        get
        {
            try
            {
                return File.ReadAllLines($"/proc/{Pid}/status").First(l => l.StartsWith("State:", StringComparison.Ordinal)) is var state
                    && !state.Contains('Z', StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
        }
    }

    /// <summary>Runs one of containerd.sh's lifecycle functions on this containerd; when it <paramref name="started"/>
    /// one, takes the new pid it printed.</summary>
    private async Task RunLifecycleAsync(string function, bool started, string? logLevel = null)
    {
        var r = await HostProcess.RunAsync(
            "bash",
            ["-c", $"source \"$1\" && CTRD_DIR=\"$2\" CTRD_SOCK=\"$3\" CTRD_PID=\"$4\" CTRD_CTR=\"$5\" CTRD_RELAUNCH_LOG_LEVEL=\"$6\" {function}", "bash",
                E2EEnvironment.ContainerdLibrary, Directory, Socket, Pid.ToString(CultureInfo.InvariantCulture), CtrPath, logLevel ?? ""],
            TimeSpan.FromMinutes(1),
            log: Log);
        Assert.True(r.ExitCode == 0, $"{function} failed: {r}");
        if (!started)
        {
            Log?.Invoke($"containerd {Pid} halted");
            return;
        }

        var pid = r.Stdout.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("CTRD_PID=", StringComparison.Ordinal));
        Assert.True(pid is not null, $"{function} printed no CTRD_PID: {r}");
        Pid = int.Parse(pid!["CTRD_PID=".Length..], CultureInfo.InvariantCulture);
        Log?.Invoke($"containerd started again, pid {Pid}");
    }

    /// <summary>Length of containerd's log now (shim log lines included): a scenario's log starts here.</summary>
    public long LogLength()
    {
        try
        {
            return new FileInfo(LogPath).Length;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>containerd's log from <paramref name="offset"/>, at most the last <paramref name="maxLines"/> lines.</summary>
    public string LogSince(long offset, int maxLines = 300)
    {
        try
        {
            using var f = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            f.Seek(Math.Min(offset, f.Length), SeekOrigin.Begin);
            using var reader = new StreamReader(f);
            var lines = reader.ReadToEnd().Split('\n');
            return string.Join('\n', lines.Length > maxLines ? lines[^maxLines..] : lines);
        }
        catch (IOException e)
        {
            return $"(cannot read {LogPath}: {e.Message})";
        }
    }
}

/// <summary>`ctr` command lines and the time bounds the tests wait with.</summary>
public static class Ctr
{
    public static readonly TimeSpan CtrTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Bound for anything that boots a pod VM (TCG: seconds per boot, more when the 2 cores are busy).
    /// The shim gives up on a guest agent after the config's bootTimeoutSeconds (60), so this only bounds a hang.</summary>
    public static readonly TimeSpan BootTimeout = TimeSpan.FromSeconds(E2EEnvironment.IsVmRuntime ? 150 : 60);

    /// <summary>Bound for an event to arrive once what causes it has happened.</summary>
    public static readonly TimeSpan EventTimeout = TimeSpan.FromSeconds(30);

    /// <summary>`ctr run` arguments for the runtime under test: run [--rm|-d] --runtime R [--runtime-config-path C] FLAGS IMAGE ID CMD...</summary>
    public static List<string> RunArgs(string id, IEnumerable<string> flags, params string[] command) =>
        RunArgsWithConfig(E2EEnvironment.IsVmRuntime ? E2EEnvironment.RuntimeConfig : null, id, flags, command);

    /// <summary>Like <see cref="RunArgs"/> with an explicit --runtime-config-path (none when null).</summary>
    public static List<string> RunArgsWithConfig(string? configPath, string id, IEnumerable<string> flags, params string[] command)
    {
        var args = new List<string> { "run", "--runtime", E2EEnvironment.Runtime };
        if (configPath is not null)
        {
            args.AddRange(["--runtime-config-path", configPath]);
        }

        args.AddRange(flags);
        args.Add(E2EEnvironment.Image);
        args.Add(id);
        args.AddRange(command);
        return args;
    }

    /// <summary>`ctr tasks exec --exec-id EXEC ID CMD...` arguments.</summary>
    public static List<string> ExecArgs(string id, string execId, params string[] command) =>
        ["tasks", "exec", "--exec-id", execId, id, .. command];
}
