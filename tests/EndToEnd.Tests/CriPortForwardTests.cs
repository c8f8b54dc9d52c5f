using System.Net;
using System.Net.Sockets;
using System.Text;
using ShimV2.Cri;
using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests;

/// <summary>
/// A pod's network as Kubernetes users reach it, through containerd's CRI plugin with CNI's bridge, in one pod (one
/// VM boot): CRI PortForward (kubectl port-forward) to a busybox httpd in the pod returns its page and a
/// multi-MiB body intact, over containerd's streaming server; the host reaches the pod IP; the pod reaches the host
/// on the bridge's gateway address.
/// </summary>
[Collection(ContainerdCollection.Name)]
public sealed class CriPortForwardTests(CriContainerdFixture cri, ITestOutputHelper output) : IClassFixture<CriContainerdFixture>
{
    private const int HttpPort = 8080;
    private const string Page = "hello from the pod\n";

    /// <summary>`seq 1 400000`: 2.7 MiB the test can compute without fetching it.</summary>
    private static readonly string Big = string.Concat(Enumerable.Range(1, 400_000).Select(i => $"{i}\n"));

    [CriFact]
    [Trait("containerd", "2.1")]
    public async Task PortForward_reaches_a_pods_web_server_the_host_reaches_the_pod_ip_and_the_pod_reaches_the_host()
    {
        var (containerd, client) = await cri.GetAsync();
        await Scenario.RunAsync(containerd, output, async s =>
        {
            await using var pod = await CriPod.RunAsync(client, s, "portfwd");
            var web = await pod.StartContainerAsync("web", "sh", "-c",
                $"mkdir -p /www && printf '{Page.TrimEnd()}\\n' > /www/index.html && seq 1 400000 > /www/big.txt && exec httpd -f -p {HttpPort} -h /www");
            var podIp = (await pod.StatusAsync()).Status.Network.Ip;

            // The web server comes up some time after StartContainer (and the shim learns of it after that): a
            // client retries, as a user of kubectl port-forward would.
            var index = await Eventually.GetAsync(
                async () =>
                {
                    var r = await ForwardGetAsync(pod, s, "/index.html");
                    return (r.Body == Page, r);
                },
                TimeSpan.FromSeconds(60), r => $"PortForward GET /index.html gave status '{r.Status}', body '{r.Body}', error '{r.Error}'");
            Assert.StartsWith("HTTP/1.", index.Status, StringComparison.Ordinal);
            Assert.Contains(" 200 ", index.Status, StringComparison.Ordinal);

            var big = await ForwardGetAsync(pod, s, "/big.txt");
            Assert.True(big.Error.Length == 0, $"port-forward error channel: {big.Error}");
            Assert.Equal(Big.Length, big.Body.Length);
            Assert.True(Big == big.Body, "the multi-MiB body arrived altered");

            // Several forwarded connections at once.
            var together = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => ForwardGetAsync(pod, s, "/index.html")));
            Assert.All(together, r => Assert.Equal(Page, r.Body));

            // The host reaches the pod's IP (CNI's bridge, the VM's NIC behind the tc redirect).
            using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) })
            {
                Assert.Equal(Page, await http.GetStringAsync($"http://{podIp}:{HttpPort}/index.html"));
            }

            // The pod reaches the host: the test listens on the bridge's gateway address, the container connects.
            var routes = await pod.ExecOkAsync(web, "ip", "route");
            var gateway = routes.Split('\n').Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Where(f => f.Length >= 3 && f[0] == "default" && f[1] == "via").Select(f => f[2]).FirstOrDefault();
            Assert.True(gateway is not null, $"no default route in the pod:\n{routes}");
            using var host = new TcpListener(IPAddress.Parse(gateway), 0);
            host.Start();
            var hostPort = ((IPEndPoint)host.LocalEndpoint).Port;
            var served = ServeOnceAsync(host);
            var fetched = await pod.ExecOkAsync(web, "wget", "-q", "-O", "-", $"http://{gateway}:{hostPort}/from-pod");
            var peer = await served.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal("hello from the host\n", fetched);
            Assert.Equal(podIp, peer.ToString());

            // Only the pod's loopback has the forwarding listener: the host's network namespace does not.
            Assert.DoesNotContain($"0100007F:{HttpPort:X4} 00000000:0000 0A", File.ReadAllText("/proc/net/tcp"), StringComparison.Ordinal);

            await pod.StopAndRemoveAsync();
            await HostState.AssertNothingLeftAsync(containerd, web);
            await HostState.AssertNothingLeftAsync(containerd, pod.Id);
        });
    }

    /// <summary>CRI PortForward, then one HTTP/1.0 GET over the streaming server's WebSocket.</summary>
    private static async Task<(string Status, string Body, string Error)> ForwardGetAsync(CriPod pod, Scenario s, string path)
    {
        var request = new PortForwardRequest { PodSandboxId = pod.Id };
        request.Port.Add(HttpPort);
        var response = await CriPod.Call(s, $"PortForward {pod.Id} {HttpPort}", () =>
            pod.Cri.Runtime.PortForwardAsync(request, deadline: CriPod.Deadline(Ctr.CtrTimeout)).ResponseAsync);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await using var forward = await PortForwardClient.ConnectAsync(response.Url, HttpPort, timeout.Token);
        await forward.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n"), timeout.Token);
        var result = await forward.ReadToEndAsync(timeout.Token);
        var text = Encoding.UTF8.GetString(result.Data);
        var split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = split < 0 ? text : text[..split];
        s.Write($"port-forward GET {path}: {result.Data.Length} bytes{(result.Error.Length > 0 ? $", error: {result.Error}" : "")}");
        return (head.Split("\r\n")[0], split < 0 ? "" : text[(split + 4)..], result.Error);
    }

    /// <summary>Answers one HTTP request with a fixed body; gives the client's address.</summary>
    private static async Task<IPAddress> ServeOnceAsync(TcpListener listener)
    {
        using var client = await listener.AcceptTcpClientAsync();
        var stream = client.GetStream();
        var request = new StringBuilder();
        var buffer = new byte[4096];
        while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var n = await stream.ReadAsync(buffer);
            if (n == 0)
            {
                break;
            }

            request.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }

        const string body = "hello from the host\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.0 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"));
        return ((IPEndPoint)client.Client.RemoteEndPoint!).Address;
    }
}
