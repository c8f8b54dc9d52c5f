using System.Net.Sockets;
using Containerd.Services.Version.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;

namespace ShimV2.Cli.Check;

/// <summary>Asks containerd which version it is: containerd.services.version.v1.Version/Version over its gRPC socket.</summary>
internal static class ContainerdVersion
{
    public const string DefaultSocket = "/run/containerd/containerd.sock";

    private static readonly Method<Empty, VersionResponse> VersionMethod = new(
        MethodType.Unary,
        "containerd.services.version.v1.Version",
        "Version",
        Marshallers.Create(static (Empty m) => m.ToByteArray(), Empty.Parser.ParseFrom),
        Marshallers.Create(static (VersionResponse m) => m.ToByteArray(), VersionResponse.Parser.ParseFrom));

    /// <exception cref="RpcException">containerd did not answer (the status says why).</exception>
    public static async Task<VersionResponse> QueryAsync(string socketPath, TimeSpan timeout, CancellationToken ct)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, token) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), token);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };

        // The authority is not used for routing: every request goes down the unix socket above.
        using var channel = GrpcChannel.ForAddress("http://containerd", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        var call = channel.CreateCallInvoker().AsyncUnaryCall(
            VersionMethod, null, new CallOptions(deadline: DateTime.UtcNow + timeout, cancellationToken: ct), new Empty());
        return await call.ResponseAsync;
    }
}
