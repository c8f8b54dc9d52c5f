using System.Collections.Concurrent;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// A long-running container (`ctr run -d ... sleep 1000`) shared by the tests of one class, so the class boots one
/// pod VM instead of one per test. Started by the first test that asks for it; replaced (and the replacement
/// logged) if an earlier test left it not RUNNING; killed and deleted when the class is done.
/// </summary>
public abstract class SharedContainer : IAsyncLifetime
{
    private static readonly ConcurrentDictionary<string, bool> SharedIds = new();
    private PrivateContainerd? _containerd;
    private string? _id;
    private string? _startFailure;

    /// <summary>Short name used in the container id.</summary>
    protected abstract string Name { get; }

    /// <summary>Extra `ctr run` flags (e.g. --memory-limit).</summary>
    protected virtual IEnumerable<string> Flags => [];

    public static bool IsShared(string id) => SharedIds.ContainsKey(id);

    public async Task<string> GetAsync(Scenario scenario)
    {
        // No lock: the tests of one collection run one at a time.
        var c = scenario.Containerd;
        _containerd = c;
        if (_startFailure is not null)
        {
            Assert.Fail($"the shared container of this class failed to start earlier (not retried): {_startFailure}");
        }

        if (_id is { } existing)
        {
            var (status, _) = await c.TaskStatusAsync(existing);
            if (status == "RUNNING")
            {
                scenario.Track(existing);
                return existing;
            }

            scenario.Write($"NOTE: shared container {existing} is {status ?? "gone"} (an earlier test broke it): starting a new one");
            await c.ForceRemoveAsync(existing);
        }

        var id = $"e2e-{Name}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4))}";
        SharedIds[id] = true;
        _id = id;
        scenario.Track(id);
        ProcessResult r;
        try
        {
            r = await c.CtrAsync(Ctr.RunArgs(id, ["-d", .. Flags], "sleep", "1000"), Ctr.BootTimeout);
        }
        catch (TimeoutException e)
        {
            _startFailure = e.Message;
            throw;
        }

        if (r.ExitCode != 0)
        {
            _startFailure = r.ToString();
            Assert.Fail($"starting the shared container failed: {r}");
        }

        await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "RUNNING",
            TimeSpan.FromSeconds(30), () => $"shared container {id} is not RUNNING");
        return id;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_containerd is { } c && _id is { } id)
        {
            await c.ForceRemoveAsync(id);
        }
    }
}
