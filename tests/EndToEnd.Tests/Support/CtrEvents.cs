using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>One line of `ctr events`: "2026-11-23 10:18:16.42 +0000 UTC default /tasks/start {"container_id":...}".</summary>
public sealed partial record CtrEvent(string Namespace, string Topic, string Json, string Raw)
{
    [GeneratedRegex(@"^\S+ \S+ \S+ \S+ (?<ns>\S+) (?<topic>/\S+) ?(?<json>.*)$")]
    private static partial Regex LinePattern();

    public string? ContainerId => Get("container_id") ?? (Topic.StartsWith("/containers/", StringComparison.Ordinal) ? Get("id") : null);

    /// <summary>TaskExit.id / TaskDelete.id (the exec id, or the container id for the init), TaskExec*.exec_id.</summary>
    public string? ProcessId => Get("exec_id") ?? Get("id");

    public long ExitStatus => GetNumber("exit_status") ?? 0;

    public static CtrEvent? TryParse(string line)
    {
        var m = LinePattern().Match(line);
        return m.Success ? new CtrEvent(m.Groups["ns"].Value, m.Groups["topic"].Value, m.Groups["json"].Value, line) : null;
    }

    /// <summary>A compact rendering used in order assertions: "/tasks/exit e1 137", "/tasks/exec-added e1", "/tasks/start".</summary>
    public string Describe(string containerId)
    {
        var pid = ProcessId;
        var isExec = pid is not null && pid != containerId;
        return Topic switch
        {
            "/tasks/exit" => $"/tasks/exit {pid} {ExitStatus}",
            "/tasks/delete" when isExec => $"/tasks/delete {pid} {ExitStatus}",
            "/tasks/delete" => $"/tasks/delete {ExitStatus}",
            "/tasks/exec-added" or "/tasks/exec-started" => $"{Topic} {pid}",
            _ => Topic,
        };
    }

    public string? Get(string field)
    {
        try
        {
            using var doc = JsonDocument.Parse(Json.Length == 0 ? "{}" : Json);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(field, out var v)
                ? v.ValueKind == JsonValueKind.String ? v.GetString() : v.GetRawText()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private long? GetNumber(string field) =>
        Get(field) is { } s && long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : null;
}

/// <summary>
/// A running `ctr events` whose lines are collected as they arrive. <see cref="StartAsync"/> returns only once the
/// subscription is live (it labels the namespace and waits for that /namespaces/update to come through), so every
/// event of the scenario that follows is seen.
/// </summary>
public sealed class CtrEvents : IAsyncDisposable
{
    private readonly HostProcess _process;
    private readonly List<CtrEvent> _events = [];
    private readonly object _lock = new();
    private readonly StringBuilder _partial = new();
    private int _consumed;

    private CtrEvents(HostProcess process)
    {
        _process = process;
    }

    public static async Task<CtrEvents> StartAsync(PrivateContainerd containerd)
    {
        var process = containerd.StartCtr(["events"], new ProcessOptions { HoldStdinOpen = true }, log: false);
        var events = new CtrEvents(process);
        var marker = Guid.NewGuid().ToString("N");
        var attempt = 0;
        try
        {
            await Eventually.TrueAsync(
                async () =>
                {
                    if (events.All().Any(e => e.Topic == "/namespaces/update" && e.Json.Contains(marker, StringComparison.Ordinal)))
                    {
                        return true;
                    }

                    if (process.HasExited)
                    {
                        Assert.Fail($"`ctr events` exited: {process.StderrSoFar}");
                    }

                    // The first labels may precede the subscription: label again until one is seen.
                    attempt++;
                    await containerd.CtrAsync(["namespaces", "label", containerd.Namespace, $"e2e.events-sync={marker}-{attempt}"],
                        TimeSpan.FromSeconds(30), log: false);
                    return false;
                },
                TimeSpan.FromSeconds(30),
                () => $"`ctr events` never showed the marker /namespaces/update; it printed: {process.StdoutSoFar} {process.StderrSoFar}");
        }
        catch
        {
            await events.DisposeAsync();
            throw;
        }

        return events;
    }

    /// <summary>Every event seen so far (parsed lazily from the process's stdout).</summary>
    public IReadOnlyList<CtrEvent> All()
    {
        lock (_lock)
        {
            var text = _process.StdoutSoFar;
            if (text.Length > _consumed)
            {
                _partial.Append(text.AsSpan(_consumed));
                _consumed = text.Length;
                var s = _partial.ToString();
                var lastNewline = s.LastIndexOf('\n');
                if (lastNewline >= 0)
                {
                    foreach (var line in s[..lastNewline].Split('\n', StringSplitOptions.RemoveEmptyEntries))
                    {
                        if (CtrEvent.TryParse(line.TrimEnd('\r')) is { } e)
                        {
                            _events.Add(e);
                        }
                    }

                    _partial.Clear().Append(s.AsSpan(lastNewline + 1));
                }
            }

            return [.. _events];
        }
    }

    /// <summary>The /tasks/* events of one container, in arrival order.</summary>
    public IReadOnlyList<CtrEvent> TaskEvents(string containerId) =>
        All().Where(e => e.Topic.StartsWith("/tasks/", StringComparison.Ordinal) && e.ContainerId == containerId).ToList();

    /// <summary>Rendered (<see cref="CtrEvent.Describe"/>) task events of a container; consecutive duplicate /tasks/oom
    /// collapse to one (the kernel may report several OOM kills of one hog; CRI needs one before the exit).</summary>
    public IReadOnlyList<string> Describe(string containerId, bool includeExecDeletes = false)
    {
        var list = new List<string>();
        foreach (var e in TaskEvents(containerId))
        {
            var d = e.Describe(containerId);
            if (!includeExecDeletes && d.StartsWith("/tasks/delete ", StringComparison.Ordinal) && d.Count(c => c == ' ') == 2)
            {
                continue;
            }

            if (d == "/tasks/oom" && list.Count > 0 && list[^1] == "/tasks/oom")
            {
                continue;
            }

            list.Add(d);
        }

        return list;
    }

    public async Task<CtrEvent> WaitForAsync(Func<CtrEvent, bool> match, TimeSpan timeout, string what)
    {
        CtrEvent? found = null;
        await Eventually.TrueAsync(
            () =>
            {
                found = All().FirstOrDefault(match);
                return found is not null || _process.HasExited;
            },
            timeout,
            () => $"no event {what}; events so far:\n{Dump()}");
        return found ?? throw new InvalidOperationException($"`ctr events` exited before {what}: {_process.StderrSoFar}");
    }

    /// <summary>Waits until the container's rendered task events end with <paramref name="expected"/>'s last entry
    /// (or the deadline passes), then asserts they equal <paramref name="expected"/> exactly, in order.
    /// Exec /tasks/delete events are left out (runc's shim sends none; ours may).</summary>
    public async Task AssertSequenceAsync(string containerId, IReadOnlyList<string> expected, TimeSpan timeout)
    {
        var last = expected[^1];
        try
        {
            await Eventually.TrueAsync(() => Describe(containerId).Contains(last), timeout, () => "");
        }
        catch (Xunit.Sdk.FailException)
        {
            // Fall through: the exact comparison below says what is missing.
        }

        var actual = Describe(containerId);
        if (!actual.SequenceEqual(expected))
        {
            Assert.Fail(
                $"task events of {containerId} are not as expected\n  expected: [{string.Join(", ", expected)}]\n  actual:   [{string.Join(", ", actual)}]\nall events:\n{Dump()}");
        }
    }

    public string Dump() => string.Join('\n', All().Select(e => e.Raw.Length > 400 ? e.Raw[..400] + "..." : e.Raw));

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync();
    }
}
