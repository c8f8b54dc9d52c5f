using Google.Protobuf;
using ShimV2.Agent.Protocol;
using ShimV2.Agent.Protocol.V1;

namespace ShimV2.Shim.Stdio;

/// <summary>IGuestStdio over the agent's ReadStdout/ReadStderr/WriteStdin/CloseStdin calls.</summary>
public sealed class AgentStdio(AgentClient agent, string containerId, string execId) : IGuestStdio
{
    /// <summary>Bytes asked for per read: big enough for throughput, well under the 4 MiB frame limit.</summary>
    private const uint ChunkSize = 1 << 20;

    public async Task<GuestOutput> ReadStdoutAsync(CancellationToken cancellationToken) =>
        Output(await agent.ReadStdoutAsync(Read(), null, cancellationToken));

    public async Task<GuestOutput> ReadStderrAsync(CancellationToken cancellationToken) =>
        Output(await agent.ReadStderrAsync(Read(), null, cancellationToken));

    public async Task WriteStdinAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken cancellationToken)
    {
        // Not copied: the caller keeps data untouched until the write completed, and the request is serialized
        // before that.
        var request = new WriteStreamRequest
        {
            ContainerId = containerId,
            ExecId = execId,
            Data = UnsafeByteOperations.UnsafeWrap(data),
            Offset = (ulong)offset,
        };
        var response = await agent.WriteStdinAsync(request, null, cancellationToken);
        if (response.Len != data.Length)
        {
            throw new IOException($"the guest took {response.Len} of {data.Length} bytes of stdin");
        }
    }

    public Task CloseStdinAsync(CancellationToken cancellationToken) =>
        agent.CloseStdinAsync(new CloseStdinRequest { ContainerId = containerId, ExecId = execId }, null, cancellationToken);

    private static GuestOutput Output(ReadStreamResponse response) =>
        new(response.Data.Memory, response.Offset <= long.MaxValue ? (long)response.Offset : throw new IOException($"the guest sent output at offset {response.Offset}"));

    private ReadStreamRequest Read() => new() { ContainerId = containerId, ExecId = execId, Len = ChunkSize };
}
