namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// What a CNI bridge/ptp plugin leaves for a pod, made with iproute2: a named network namespace holding eth0 (one end
/// of a veth pair) with 10.199.N.2/24 and a default route via 10.199.N.1, the other end on the host with .1.
/// </summary>
public sealed class PodNetns : IAsyncDisposable
{
    private static int _next;
    private readonly Action<string> _log;

    private PodNetns(string name, string hostVeth, int subnet, Action<string> log)
    {
        Name = name;
        HostVeth = hostVeth;
        Subnet = subnet;
        _log = log;
    }

    public string Name { get; }

    public string Path => $"/var/run/netns/{Name}";

    public string HostVeth { get; }

    public int Subnet { get; }

    public string HostAddress => $"10.199.{Subnet}.1";

    public string PodAddress => $"10.199.{Subnet}.2";

    public static async Task<PodNetns> CreateAsync(Action<string> log)
    {
        var n = Interlocked.Increment(ref _next);
        var subnet = (Environment.ProcessId + n) % 200 + 20;
        var tag = $"{Environment.ProcessId % 100000}{n}";
        var netns = new PodNetns($"csharp-e2e-{tag}", $"cse{tag}", subnet, log);
        await netns.IpAsync("netns", "add", netns.Name);
        await netns.IpAsync("link", "add", netns.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", netns.Name);
        await netns.IpAsync("addr", "add", $"{netns.HostAddress}/24", "dev", netns.HostVeth);
        await netns.IpAsync("link", "set", netns.HostVeth, "up");
        await netns.IpAsync("-n", netns.Name, "link", "set", "lo", "up");
        await netns.IpAsync("-n", netns.Name, "addr", "add", $"{netns.PodAddress}/24", "dev", "eth0");
        await netns.IpAsync("-n", netns.Name, "link", "set", "eth0", "up");
        await netns.IpAsync("-n", netns.Name, "route", "add", "default", "via", netns.HostAddress);
        return netns;
    }

    /// <summary>`tc -n NAME ARGS`: what the runtime left in the namespace.</summary>
    public async Task<string> TcAsync(params string[] args) => (await RunAsync("tc", ["-n", Name, .. args])).Stdout;

    public async Task<string> IpAsync(params string[] args) => (await RunAsync("ip", args)).Stdout;

    public async ValueTask DisposeAsync()
    {
        // Deleting the namespace deletes eth0 and with it the host end of the pair.
        await RunAsync("ip", ["netns", "delete", Name]);
    }

    private async Task<ProcessResult> RunAsync(string tool, string[] args)
    {
        var r = await HostProcess.RunAsync(tool, args, TimeSpan.FromSeconds(30), log: _log);
        return r.ExitCode == 0 ? r : throw new InvalidOperationException(r.ToString());
    }
}
