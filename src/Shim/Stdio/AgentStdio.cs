using Google.Protobuf;
using ShimV2.Agent.Protocol;
using ShimV2.Agent.Protocol.V1;

namespace ShimV2.Shim.Stdio;

/// <summary>IGuestStdio over the agent's ReadStdout/ReadStderr/WriteStdin/CloseStdin calls.</summary>
public sealed class AgentStdio(AgentClient agent, string containerId, string execId) : IGuestStdio
{
    /// <summary>Bytes asked for per read: big enough for throughput, well under the 4 MiB frame limit.</summary>
    private const uint ChunkSize = 1 << 20;

    public async Task<ReadOnlyMemory<byte>> ReadStdoutAsync(CancellationToken cancellationToken)
    {
        var response = await agent.ReadStdoutAsync(Read(), null, cancellationToken);
        return response.Data.Memory;
    }

    public async Task<ReadOnlyMemory<byte>> ReadStderrAsync(CancellationToken cancellationToken)
    {
        var response = await agent.ReadStderrAsync(Read(), null, cancellationToken);
        return response.Data.Memory;
    }

    public async Task WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            var request = new WriteStreamRequest { ContainerId = containerId, ExecId = execId, Data = ByteString.CopyFrom(data.Span) };
            var response = await agent.WriteStdinAsync(request, null, cancellationToken);
            if (response.Len == 0)
            {
                throw new IOException("guest process stopped taking stdin");
            }

            data = data[(int)Math.Min(response.Len, (uint)data.Length)..];
        }
    }

    public Task CloseStdinAsync(CancellationToken cancellationToken) =>
        agent.CloseStdinAsync(new CloseStdinRequest { ContainerId = containerId, ExecId = execId }, null, cancellationToken);

    private ReadStreamRequest Read() => new() { ContainerId = containerId, ExecId = execId, Len = ChunkSize };
}
