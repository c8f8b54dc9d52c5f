using System.Net.Sockets;
using Containerd.Services.Version.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace ShimV2.Cli.Check;

/// <summary>Asks containerd which version it is: containerd.services.version.v1.Version/Version over its gRPC socket.</summary>
internal static class ContainerdVersion
{
    public const string DefaultSocket = "/run/containerd/containerd.sock";

    /// <exception cref="IOException">containerd did not answer (the message says why).</exception>
    public static async Task<VersionResponse> QueryAsync(string socketPath, TimeSpan timeout, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        try
        {
            var answer = await GrpcUnaryCall.CallAsync(
                socketPath, "/containerd.services.version.v1.Version/Version", new Empty().ToByteArray(), deadline.Token);
            return VersionResponse.Parser.ParseFrom(answer);
        }
        catch (SocketException e)
        {
            throw new IOException(e.Message, e);
        }
        catch (EndOfStreamException e)
        {
            throw new IOException("the connection closed before an answer", e);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new IOException($"the answer is not a version: {e.Message}", e);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw new IOException($"no answer within {timeout.TotalSeconds:0} s", e);
        }
    }
}
