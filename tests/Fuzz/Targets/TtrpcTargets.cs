using Google.Protobuf;
using Grpc.Core;
using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent.Stdio;
using ShimV2.Ttrpc;
using AgentApi = ShimV2.Agent.Protocol.V1.Agent;

namespace ShimV2.Fuzz;

/// <summary>
/// TTRPC as a peer would abuse it: the input is the byte stream a client sends a real <see cref="TtrpcServer"/>
/// (frames, requests, payloads), or the one a server answers a real <see cref="TtrpcClient"/> with.
/// </summary>
internal static class TtrpcTargets
{
    public const string AgentService = "csharp.agent.v1.Agent";

    // The agent's service bound as the agent binds it (the generated base through TtrpcServiceBinder, WriteStdin read
    // by the agent's own parser), with an implementation that answers at once: what is fuzzed is the server and the
    // binding, not the agent. The methods it does not override answer the generated base's Unimplemented.
    private static readonly TtrpcServer AgentServer = new([
        new TtrpcServiceBinder()
            .ParseWith(WriteStreamParser.Parse)
            .Bind(binder => AgentApi.BindService(binder, new ImmediateAgent())),
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
            // As the shim calls the agent: the generated client over TtrpcCallInvoker.
            new AgentApi.AgentClient(new TtrpcCallInvoker(client)).CheckAsync(new CheckRequest()).ResponseAsync.GetAwaiter().GetResult();
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

    private sealed class ImmediateAgent : AgentApi.AgentBase
    {
        public override Task<CheckResponse> Check(CheckRequest request, ServerCallContext context) =>
            Task.FromResult(new CheckResponse { AgentVersion = "fuzz" });

        public override Task<WriteStreamResponse> WriteStdin(WriteStreamRequest request, ServerCallContext context) =>
            Task.FromResult(new WriteStreamResponse { Len = (uint)request.Data.Length });

        public override Task<ReadStreamResponse> ReadStdout(ReadStreamRequest request, ServerCallContext context) =>
            Task.FromResult(new ReadStreamResponse { Data = ByteString.CopyFromUtf8(request.ContainerId), Offset = request.Len });
    }
}
