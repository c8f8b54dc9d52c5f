using ShimV2.Cri;
using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>Which streams a CRI Exec or Attach asks for (CRI refuses tty together with stderr).</summary>
[Flags]
public enum Streams
{
    None = 0,
    Stdin = 1,
    Stdout = 2,
    Stderr = 4,
    Tty = 8,
}

/// <summary>
/// kubectl exec / attach through containerd's streaming server: the CRI call gives a URL, <see cref="StreamingClient"/>
/// connects to it as kubelet's websocket transport would.
/// </summary>
public static class CriStreams
{
    /// <summary>Bound for anything a streamed command is expected to print or do.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static async Task<StreamingClient> ExecStreamAsync(this CriPod pod, string containerId, Streams streams, params string[] cmd)
    {
        var request = new ExecRequest
        {
            ContainerId = containerId,
            Stdin = streams.HasFlag(Streams.Stdin),
            Stdout = streams.HasFlag(Streams.Stdout),
            Stderr = streams.HasFlag(Streams.Stderr),
            Tty = streams.HasFlag(Streams.Tty),
        };
        request.Cmd.AddRange(cmd);
        var response = await CriPod.Call(pod.Scenario, $"Exec {containerId} ({streams}) {string.Join(' ', cmd)}", () =>
            pod.Cri.Runtime.ExecAsync(request, deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync);
        return await ConnectAsync(pod, response.Url);
    }

    public static async Task<StreamingClient> AttachAsync(this CriPod pod, string containerId, Streams streams)
    {
        var request = new AttachRequest
        {
            ContainerId = containerId,
            Stdin = streams.HasFlag(Streams.Stdin),
            Stdout = streams.HasFlag(Streams.Stdout),
            Stderr = streams.HasFlag(Streams.Stderr),
            Tty = streams.HasFlag(Streams.Tty),
        };
        var response = await CriPod.Call(pod.Scenario, $"Attach {containerId} ({streams})", () =>
            pod.Cri.Runtime.AttachAsync(request, deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync);
        return await ConnectAsync(pod, response.Url);
    }

    private static async Task<StreamingClient> ConnectAsync(CriPod pod, string url)
    {
        using var deadline = new CancellationTokenSource(Ctr.CtrTimeout);
        var session = await StreamingClient.ConnectAsync(url, deadline.Token);
        pod.Scenario.Write($"streaming {url}: connected ({session.Protocol})");
        return session;
    }
}
