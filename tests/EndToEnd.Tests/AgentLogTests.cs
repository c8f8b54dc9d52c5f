namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// Issue 8 part 4 / issue 9: what the guest agent cannot honour is said in containerd's log, not only on the guest
/// console that is deleted with the pod. An AppArmor profile (`ctr run --apparmor-profile`) is applied by runc but
/// not in the guest, which loads no AppArmor policy: the agent warns, and the shim forwards the warning tagged with
/// the sandbox and the container (and the exec, which inherits the profile from the container's process spec).
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class AgentLogTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    [VmFact]
    public Task Agent_warning_about_an_unhonoured_spec_field_reaches_containerds_log_tagged_with_the_container() =>
        Scenario.RunAsync(fixture, output, async s =>
        {
            var c = s.Containerd;
            var logStart = c.LogLength();
            await using var events = await s.EventsAsync();
            var id = s.NewId("agentlog");
            var profile = $"csharp-e2e-{id[^8..]}";

            await c.CtrOkAsync(Ctr.RunArgs(id, ["-d", "--apparmor-profile", profile], "sleep", "1000"), Ctr.BootTimeout);
            await c.CtrOkAsync(["tasks", "exec", "--exec-id", "warned", id, "true"], Ctr.BootTimeout);

            // containerd copies the shim's log FIFO into its own log: logfmt lines, the message quoted.
            var container = $"sandbox {id} container {id}: guest agent: AppArmor profile \\\"{profile}\\\" not applied";
            var exec = $"sandbox {id} container {id} exec warned: guest agent: AppArmor profile \\\"{profile}\\\" not applied";
            var lines = await Eventually.GetAsync(
                () =>
                {
                    var log = c.LogSince(logStart, maxLines: 20_000).Split('\n');
                    var found = log.Where(l => l.Contains(container, StringComparison.Ordinal) || l.Contains(exec, StringComparison.Ordinal)).ToList();
                    return Task.FromResult((found.Count >= 2, found));
                },
                Ctr.EventTimeout,
                found => $"containerd's log has {found.Count} of the 2 forwarded warnings ({string.Join(" | ", found)})");
            s.Write($"forwarded: {string.Join(" | ", lines)}");
            Assert.Single(lines, l => l.Contains(container, StringComparison.Ordinal) && l.Contains("level=warning", StringComparison.Ordinal));
            Assert.Single(lines, l => l.Contains(exec, StringComparison.Ordinal) && l.Contains("level=warning", StringComparison.Ordinal));

            await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
            await events.WaitForAsync(e => e.Topic == "/tasks/exit" && e.ContainerId == id && e.ProcessId == id, Ctr.EventTimeout, $"/tasks/exit of {id}'s init");
            await c.CtrOkAsync(["tasks", "delete", id]);
            await c.CtrOkAsync(["containers", "delete", id]);
            await HostState.AssertNothingLeftAsync(c, id);

            // Once, not again at teardown (the last fetch acknowledges what was already logged).
            var all = c.LogSince(logStart, maxLines: 20_000);
            Assert.Equal(1, Count(all, container));
            Assert.Equal(1, Count(all, exec));
        });

    private static int Count(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
        {
            n++;
        }

        return n;
    }
}
