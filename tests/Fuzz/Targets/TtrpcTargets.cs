using Google.Protobuf;
using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent.Stdio;
using ShimV2.Ttrpc;

namespace ShimV2.Fuzz;

/// <summary>
/// TTRPC as a peer would abuse it: the input is the byte stream a client sends a real <see cref="TtrpcServer"/>
/// (frames, requests, payloads), or the one a server answers a real <see cref="TtrpcClient"/> with.
/// </summary>
internal static class TtrpcTargets
{
    public const string AgentService = "csharp.agent.v1.Agent";

    // The agent's own service descriptor, with handlers that parse as the agent does (WriteStdin's own parser
    // included) and answer at once: what is fuzzed is the server, not the agent.
    private static readonly TtrpcServer AgentServer = new([
        TtrpcServiceDefinition.Create(AgentReflection.Descriptor.Services.Single(s => s.Name == "Agent"))
            .AddUnary<CheckRequest, CheckResponse>("Check", (_, _) => Task.FromResult(new CheckResponse { AgentVersion = "fuzz" }))
            .AddUnary<WriteStreamRequest, WriteStreamResponse>("WriteStdin", WriteStreamParser.Parse,
                (r, _) => Task.FromResult(new WriteStreamResponse { Len = (uint)r.Data.Length }))
            .AddUnary<ReadStreamRequest, ReadStreamResponse>("ReadStdout", (r, _) => Task.FromResult(new ReadStreamResponse
            {
                Data = ByteString.CopyFromUtf8(r.ContainerId),
            }))
            .Build(),
    ]);

    /// <summary>The server reads the input as one connection until its end; it must never fail doing so.</summary>
    public static void Server(ReadOnlySpan<byte> data) =>
        AgentServer.ServeConnectionAsync(new ReplayStream(data.ToArray())).GetAwaiter().GetResult();

    /// <summary>A client makes one call (stream 1) and gets the input as the server's answer.</summary>
    public static void Client(ReadOnlySpan<byte> data)
    {
        var client = new TtrpcClient(new ReplayStream(data.ToArray(), afterFirstWrite: true));
        try
        {
            client.CallAsync<CheckRequest, CheckResponse>(AgentService, "Check", new CheckRequest()).GetAwaiter().GetResult();
        }
        catch (TtrpcException)
        {
            // A status, a malformed answer, or the connection closed without one: all clear errors.
        }
        finally
        {
            client.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
