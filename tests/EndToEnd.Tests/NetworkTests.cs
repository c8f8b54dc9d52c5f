namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// A pod network namespace as CNI leaves it (a veth with an address and a default route): the container sees that
/// interface (same address, MAC, routes) and reaches the host through it, the host reaches the container, and when
/// the pod is gone the namespace is as CNI made it.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class NetworkTests(ContainerdFixture fixture, ITestOutputHelper output)
{
    [E2EFact]
    public Task Container_gets_the_pod_interface_and_reaches_the_host_both_ways() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var netns = await PodNetns.CreateAsync(s.Write);
        var podMac = (await netns.IpAsync("-n", netns.Name, "-o", "link", "show", "eth0")).Split("link/ether ")[1].Split(' ')[0];
        var id = s.NewId("net");

        await c.CtrOkAsync(Ctr.RunArgs(id, ["-d", "--with-ns", $"network:{netns.Path}"], "sleep", "1000"), Ctr.BootTimeout);
        var inside = await c.CtrAsync(Ctr.ExecArgs(id, "addr", "sh", "-c", "ip -o addr show eth0; ip -o link show eth0; ip route"));
        Assert.True(inside.ExitCode == 0, inside.ToString());
        Assert.Contains($"inet {netns.PodAddress}/24", inside.Stdout, StringComparison.Ordinal);
        Assert.Contains($"link/ether {podMac}", inside.Stdout, StringComparison.Ordinal);
        Assert.Contains($"default via {netns.HostAddress} dev eth0", inside.Stdout, StringComparison.Ordinal);

        var ping = await c.CtrAsync(Ctr.ExecArgs(id, "ping", "ping", "-c", "1", "-W", "20", netns.HostAddress), TimeSpan.FromSeconds(60));
        Assert.True(ping.ExitCode == 0, $"container → host: {ping}");

        // host → container: a TCP connection to a listener in the container reads its greeting.
        await using var listener = c.StartCtr(Ctr.ExecArgs(id, "listen", "sh", "-c", "echo hello-from-the-pod | nc -l -p 8080"));
        var greeting = await Eventually.GetAsync(async () =>
        {
            try
            {
                using var client = new System.Net.Sockets.TcpClient();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await client.ConnectAsync(netns.PodAddress, 8080, timeout.Token);
                using var reader = new StreamReader(client.GetStream());
                var line = await reader.ReadLineAsync(timeout.Token);
                return (line != null, line ?? "connection closed without a line");
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or OperationCanceledException or IOException)
            {
                return (false, e.Message); // the listener is not up yet
            }
        }, TimeSpan.FromSeconds(60), last => $"no greeting from {netns.PodAddress}:8080 (last: {last})");
        Assert.Equal("hello-from-the-pod", greeting);

        await c.CtrOkAsync(["tasks", "kill", "-s", "SIGKILL", id]);
        await Eventually.TrueAsync(async () => (await c.TaskStatusAsync(id)).Status == "STOPPED", Ctr.EventTimeout, () => $"{id} did not stop");
        await c.CtrOkAsync(["tasks", "delete", id]);
        await c.CtrOkAsync(["containers", "delete", id]);
        Assert.DoesNotContain("ingress", await netns.TcAsync("qdisc", "show", "dev", "eth0"), StringComparison.Ordinal);
        Assert.DoesNotContain("tap", await netns.IpAsync("-n", netns.Name, "-o", "link", "show"), StringComparison.Ordinal);
        await HostState.AssertNothingLeftAsync(c, id);
    });

    /// <summary>The pod's NIC cannot be attached (its tap's name is taken by another kind of interface, so QEMU,
    /// restoring from the template or booting cold, cannot open it): the start fails naming the tap, and nothing is
    /// left. No guest boots.</summary>
    [E2EFact]
    public Task A_nic_that_cannot_be_attached_fails_the_start_clearly_and_leaves_nothing() => Scenario.RunAsync(fixture, output, async s =>
    {
        var c = s.Containerd;
        await using var netns = await PodNetns.CreateAsync(s.Write);
        await netns.IpAsync("-n", netns.Name, "link", "add", "tap0_cs", "type", "veth", "peer", "name", "tap0_peer");
        var id = s.NewId("badnic");

        var r = await c.CtrAsync(Ctr.RunArgs(id, ["-d", "--with-ns", $"network:{netns.Path}"], "sleep", "1000"), Ctr.BootTimeout);
        Assert.True(r.ExitCode != 0, $"ctr started a pod whose tap cannot be opened: {r}");
        s.Write($"ctr said: {r.Stderr.Trim()}");
        Assert.Contains("tap0_cs", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);

        await c.CtrAsync(["containers", "delete", id]);
        Assert.DoesNotContain("ingress", await netns.TcAsync("qdisc", "show", "dev", "eth0"), StringComparison.Ordinal);
        var links = await netns.IpAsync("-n", netns.Name, "-o", "link", "show");
        Assert.DoesNotContain("cstpl", links, StringComparison.Ordinal);
        await HostState.AssertNothingLeftAsync(c, id);
    });
}
