using Containerd.Task.V2;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Ttrpc;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// Talks to a running shim's TTRPC socket directly, for the task API calls containerd 1.6's `ctr` has no command
/// for (there is no `ctr task update`). It sends exactly what containerd's Tasks service forwards to the shim:
/// the same request message, the same Any type URL (JSON value), the namespace in the metadata.
/// </summary>
public static class ShimClient
{
    private const string Service = "containerd.task.v2.Task";
    private const string LinuxResourcesTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

    /// <summary>The shim's address from the bundle's `address` file ("unix:///run/containerd/s/...").</summary>
    public static string SocketPath(PrivateContainerd containerd, string id)
    {
        var address = File.ReadAllText(Path.Combine(containerd.BundleDirectory(id), "address")).Trim();
        return address.StartsWith("unix://", StringComparison.Ordinal) ? address["unix://".Length..] : address;
    }

    /// <summary>Update{id, resources = LinuxResources JSON} as containerd's Tasks.Update sends it.</summary>
    public static async Task UpdateAsync(PrivateContainerd containerd, string id, string linuxResourcesJson)
    {
        await using var client = await TtrpcClient.ConnectUnixAsync(SocketPath(containerd, id));
        var request = new UpdateTaskRequest
        {
            Id = id,
            Resources = new Any { TypeUrl = LinuxResourcesTypeUrl, Value = ByteString.CopyFromUtf8(linuxResourcesJson) },
        };
        await client.CallAsync<UpdateTaskRequest, Empty>(Service, "Update", request, Options(containerd));
    }

    /// <summary>A connection to the shim serving <paramref name="id"/>, for a sequence of task API calls.</summary>
    public static async Task<Connection> ConnectAsync(PrivateContainerd containerd, string id) =>
        new(await TtrpcClient.ConnectUnixAsync(SocketPath(containerd, id)), Options(containerd));

    public sealed class Connection(TtrpcClient client, TtrpcCallOptions options) : IAsyncDisposable
    {
        public Task<TResponse> CallAsync<TRequest, TResponse>(string method, TRequest request)
            where TRequest : IMessage
            where TResponse : IMessage<TResponse>, new() =>
            client.CallAsync<TRequest, TResponse>(Service, method, request, options);

        public ValueTask DisposeAsync() => client.DisposeAsync();
    }

    private static TtrpcCallOptions Options(PrivateContainerd containerd) => new()
    {
        Timeout = TimeSpan.FromSeconds(60),
        Metadata = [new("containerd-namespace-ttrpc", containerd.Namespace)],
    };
}
