using System.Globalization;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 10, no leaks over time, through ctr: E2E_CYCLES_CTR pods (CI: 3; eng/soak.sh: 100) each created, used and
/// deleted; after each, nothing of it is left and the host's counts (<see cref="HostCounts"/>) are back where they
/// were. The last pod is a long-lived shim's check as well: E2E_CYCLES_EXEC execs (CI: 10) in it, and neither the
/// shim's nor QEMU's open fds grow with them.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class LeakCycleTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(30);

    [VmFact]
    public Task Create_delete_cycles_through_ctr_leave_nothing_and_execs_leak_no_shim_fd() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        var cycles = LeakReport.Cycles("E2E_CYCLES_CTR", 2);
        var execs = LeakReport.Cycles("E2E_CYCLES_EXEC", 10);
        var before = HostCounts.Take(c);
        s.Write($"before: {before}");
        var baseline = before with { ContainerdFds = int.MaxValue };
        HostCounts? afterFirst = null;
        var now = before;
        var shimFds = (First: 0, Last: 0);
        for (var i = 1; i <= cycles; i++)
        {
            var id = s.NewId($"cycle{i}");
            var last = i == cycles;
            await c.CtrOkAsync(Ctr.RunArgs(id, ["-d"], "sleep", "1000"), Ctr.BootTimeout);
            var echo = await c.CtrOkAsync(Ctr.ExecArgs(id, "hello", "echo", $"cycle {i}"));
            Assert.Equal($"cycle {i}\n", echo.Stdout);
            if (last)
            {
                shimFds = await ExecCyclesAsync(s, id, execs);
            }

            await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
            await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "STOPPED", Ctr.EventTimeout, () => $"{id} is not STOPPED");
            await c.CtrOkAsync(["tasks", "delete", id]);
            await c.CtrOkAsync(["containers", "delete", id]);
            await HostState.AssertNothingLeftAsync(c, id);
            now = await HostCounts.SettleAtAsync(c, baseline, Settle);
            if (afterFirst is null)
            {
                afterFirst = now;
                baseline = before with { ContainerdFds = now.ContainerdFds };
            }

            s.Write($"after cycle {i}: {now}");
            if (i % 10 == 0 && !last)
            {
                // A soak cut short (deadline, shared machine) still leaves how far it got with nothing left.
                LeakReport.Append(s, string.Create(CultureInfo.InvariantCulture, $"ctr cycle {i}/{cycles}: nothing left so far; containerd fds {now.ContainerdFds}"));
            }
        }

        LeakReport.Append(s, string.Create(CultureInfo.InvariantCulture,
            $"ctr cycles {cycles}: nothing left after each (process, mount, socket, sandbox dir, bundle, net device, netns, cgroup); "
            + $"containerd fds before {before.ContainerdFds}, after the first {afterFirst!.ContainerdFds}, after the last {now.ContainerdFds}; "
            + $"{execs} execs in one pod: shim fds after the first {shimFds.First}, after the last {shimFds.Last}"));
    });

    /// <summary>Runs <paramref name="count"/> execs in the pod; after each, the shim's and QEMU's fd counts settle at
    /// (at most) what they were after the first. Returns the shim's counts after the first and the last.</summary>
    private static async Task<(int First, int Last)> ExecCyclesAsync(Scenario s, string id, int count)
    {
        var c = s.Containerd;
        var shim = Assert.Single(HostState.ShimProcesses(id));
        var qemu = Assert.Single(HostState.QemuProcesses(id));
        int? firstShim = null, firstQemu = null;
        var lastShim = 0;
        for (var i = 1; i <= count; i++)
        {
            var r = await c.CtrOkAsync(Ctr.ExecArgs(id, $"x{i}", "sh", "-c", $"echo exec {i}; echo err >&2"));
            Assert.Equal($"exec {i}\n", r.Stdout);
            if (firstShim is null)
            {
                // The first exec opens what every later one reuses (agent streams, loggers): the baseline is after it.
                // containerd's fifos are closed by the shim once the exec's output drained and ctr went.
                firstShim = HostCounts.FdCount(shim.Pid);
                firstQemu = HostCounts.FdCount(qemu.Pid);
                s.Write($"after exec 1: shim fds {firstShim}, qemu fds {firstQemu}");
                continue;
            }

            var (shimNow, qemuNow) = await Eventually.GetAsync(
                () =>
                {
                    var now = (HostCounts.FdCount(shim.Pid), HostCounts.FdCount(qemu.Pid));
                    return Task.FromResult((now.Item1 <= firstShim && now.Item2 <= firstQemu, now));
                },
                Settle,
                now => $"after exec {i} the shim has {now.Item1} fds (after the first: {firstShim}), qemu {now.Item2} (after the first: {firstQemu}): {FdList(shim.Pid)}");
            lastShim = shimNow;
            if (i == count)
            {
                s.Write($"after exec {i}: shim fds {shimNow}, qemu fds {qemuNow}");
            }
        }

        return (firstShim ?? 0, count == 1 ? firstShim ?? 0 : lastShim);
    }

    private static string FdList(int pid)
    {
        try
        {
            return string.Join(", ", Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Select(f => new FileInfo(f).LinkTarget).GroupBy(t => t?.Split(':')[0] ?? "?").Select(g => $"{g.Key} x{g.Count()}"));
        }
        catch (IOException e)
        {
            return e.Message;
        }
    }
}
