using System.Diagnostics;
using System.Security.Cryptography;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// One test's run against the private containerd: hands out unique container ids, logs every ctr command with its
/// exit code and time, keeps copying the guest console logs of its sandboxes while they exist (they vanish with
/// the sandbox), and when the test fails writes the containerd log since the test began (it carries the shim's
/// log lines) and those consoles to the test output. At the end it removes whatever its containers left in
/// containerd (best effort, never asserting).
/// </summary>
public sealed class Scenario : IAsyncDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly List<string> _ids = [];
    private readonly Dictionary<string, string> _consoles = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _consoleTap;
    private readonly long _logStart;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private Scenario(PrivateContainerd containerd, ITestOutputHelper output)
    {
        Containerd = containerd;
        _output = output;
        _logStart = containerd.LogLength();
        containerd.Log = Write;
        _consoleTap = TapConsolesAsync(_stop.Token);
    }

    public PrivateContainerd Containerd { get; }

    public static async Task RunAsync(ContainerdFixture fixture, ITestOutputHelper output, Func<Scenario, Task> body) =>
        await RunAsync(await fixture.GetAsync(), output, body);

    /// <summary>A scenario against a containerd other than the collection's (e.g. the CRI one).</summary>
    public static async Task RunAsync(PrivateContainerd containerd, ITestOutputHelper output, Func<Scenario, Task> body)
    {
        await using var scenario = new Scenario(containerd, output);
        try
        {
            await body(scenario);
        }
        catch (Exception e)
        {
            scenario.Write($"FAILED after {scenario._clock.Elapsed.TotalSeconds:0.0} s: {e.GetType().Name}");
            scenario.WriteDiagnostics();
            throw;
        }
    }

    /// <summary>A fresh container id, "e2e-&lt;what&gt;-&lt;8 hex&gt;", cleaned up at the end of the scenario.</summary>
    public string NewId(string what)
    {
        var id = $"e2e-{what}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
        lock (_ids)
        {
            _ids.Add(id);
        }

        return id;
    }

    /// <summary>Also watch (console log, cleanup) a container this scenario did not name, e.g. a shared one.</summary>
    public void Track(string id)
    {
        lock (_ids)
        {
            if (!_ids.Contains(id))
            {
                _ids.Add(id);
            }
        }
    }

    public void Write(string line)
    {
        try
        {
            _output.WriteLine($"[{_clock.Elapsed.TotalSeconds,6:0.00}] {line}");
        }
        catch (InvalidOperationException)
        {
            // The test is over (a background task wrote late).
        }
    }

    public Task<CtrEvents> EventsAsync() => CtrEvents.StartAsync(Containerd);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _consoleTap;
        string[] ids;
        lock (_ids)
        {
            ids = [.. _ids];
        }

        foreach (var id in ids.Where(i => !SharedContainer.IsShared(i)))
        {
            await Containerd.ForceRemoveAsync(id);
        }

        Containerd.Log = null;
        _stop.Dispose();
    }

    private void WriteDiagnostics()
    {
        Write($"---- containerd log since the test began ({Containerd.LogPath}; shim lines included) ----");
        foreach (var line in Containerd.LogSince(_logStart).Split('\n'))
        {
            Write(line);
        }

        lock (_consoles)
        {
            foreach (var (id, text) in _consoles)
            {
                Write($"---- guest console of sandbox {id} (last 60 lines) ----");
                var lines = text.Split('\n');
                foreach (var line in lines.Length > 60 ? lines[^60..] : lines)
                {
                    Write(line);
                }
            }
        }
    }

    private async Task TapConsolesAsync(CancellationToken cancel)
    {
        if (!E2EEnvironment.IsVmRuntime)
        {
            return;
        }

        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250));
        do
        {
            string[] ids;
            lock (_ids)
            {
                ids = [.. _ids];
            }

            foreach (var id in ids)
            {
                var path = Path.Combine(HostState.SandboxDirectory(id), "vm", "console.log");
                try
                {
                    var text = File.ReadAllText(path);
                    lock (_consoles)
                    {
                        _consoles[id] = text.Length > 64 * 1024 ? text[^(64 * 1024)..] : text;
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Not there (yet, or any more): keep the last copy.
                }
            }

            try
            {
                await timer.WaitForNextTickAsync(cancel);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        while (!cancel.IsCancellationRequested);
    }
}
