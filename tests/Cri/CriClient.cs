using System.Net.Sockets;
using Grpc.Net.Client;
using ShimV2.Cri.V1;

namespace ShimV2.Cri;

/// <summary>
/// A CRI client as kubelet is one: runtime.v1 RuntimeService and ImageService over gRPC (HTTP/2 without TLS) on
/// containerd's unix socket. Calls carry their own deadlines (<c>deadline:</c> on each call); nothing here retries.
/// </summary>
public sealed class CriClient : IDisposable
{
    private readonly GrpcChannel _channel;

    private CriClient(GrpcChannel channel)
    {
        _channel = channel;
        Runtime = new RuntimeService.RuntimeServiceClient(channel);
        Images = new ImageService.ImageServiceClient(channel);
    }

    public RuntimeService.RuntimeServiceClient Runtime { get; }

    public ImageService.ImageServiceClient Images { get; }

    /// <summary>A client for the CRI server on <paramref name="socketPath"/>. Connects lazily, on the first call.</summary>
    public static CriClient ForUnixSocket(string socketPath)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancel) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancel);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };

        // The host name is only the :authority of the HTTP/2 requests; the socket above is where they go.
        // ExecSync output may be up to 16 MiB per stream (CRI caps it there), hence the larger receive limit.
        var channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        });
        return new CriClient(channel);
    }

    public void Dispose() => _channel.Dispose();
}
