using ShimV2.Cri;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// A second private containerd, with its CRI plugin on (eng/lib/cri.sh's cri_start: runtime handler `csharp` as the
/// README configures it, restrict_oom_score_adj, the local pause image as sandbox image, CNI bridge on a private
/// subnet), the busybox and pause images imported into `k8s.io`. Started on first use, stopped (with containerd_stop,
/// which also deletes the CNI bridge) when the test class is done; its log is kept as containerd-&lt;version&gt;-cri.log.
/// </summary>
public sealed class CriContainerdFixture : IAsyncLifetime
{
    private readonly object _lock = new();
    private Task<(PrivateContainerd, CriClient)>? _start;
    private (PrivateContainerd Containerd, CriClient Client)? _started;

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>The CRI containerd and a client on its socket; the first call starts it.</summary>
    public async Task<(PrivateContainerd Containerd, CriClient Client)> GetAsync()
    {
        Task<(PrivateContainerd, CriClient)> start;
        lock (_lock)
        {
            start = _start ??= StartAsync();
        }

        try
        {
            return (_started = await start).Value;
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"the private CRI containerd did not start: {e.Message}", e);
        }
    }

    public async Task DisposeAsync()
    {
        if (_started is { } s)
        {
            s.Client.Dispose();
            await ContainerdFixture.StopAsync(s.Containerd, "cri");
        }
    }

    private static async Task<(PrivateContainerd, CriClient)> StartAsync()
    {
        var containerd = await ContainerdFixture.StartAsync(E2EEnvironment.CriLibrary, "cri_start", "k8s.io");
        return (containerd, CriClient.ForUnixSocket(containerd.Socket));
    }
}
