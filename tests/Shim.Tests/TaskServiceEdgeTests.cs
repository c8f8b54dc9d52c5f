using System.Net.Sockets;
using Containerd.Task.V2;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Shim.Events;
using ShimV2.Shim.Tasks;
using ShimV2.Ttrpc;
using TaskApi = Containerd.Task.V2.Task;

namespace ShimV2.Shim.Tests;

/// <summary>
/// The task service as containerd meets it: the generated containerd.task.v2 binding served over TTRPC, called with
/// the generated client. Domain errors arrive as their wire codes, mapped once at the edge.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "xunit disposes it through IAsyncLifetime.")]
public sealed class TaskServiceEdgeTests : IAsyncLifetime
{
    private readonly TaskServiceHarness _h = new();
    private TtrpcServer _server = null!;
    private Socket _listener = null!;
    private Task _serving = Task.CompletedTask;
    private TtrpcClient _client = null!;

    private TaskApi.TaskClient Shim => new(new TtrpcCallInvoker(_client));

    public async Task InitializeAsync()
    {
        var path = Path.Combine(_h.ScratchDirectory, "shim.sock");
        _server = new TtrpcServer([TaskServiceDefinition.Create(_h.Service)], NullLogger.Instance);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen();
        _serving = _server.ServeAsync(_listener);
        _client = await TtrpcClient.ConnectUnixAsync(path);
    }

    public async Task DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.ShutdownAsync();
        _listener.Dispose();
        await _serving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
        await _h.DisposeAsync();
    }

    [Fact]
    public async Task A_task_is_created_and_reported_through_the_generated_binding()
    {
        var (bundle, stdout) = _h.Bundle("c1");
        var created = await Shim.CreateAsync(new CreateTaskRequest { Id = "c1", Bundle = bundle, Stdout = stdout }).ResponseAsync;
        await _h.Events.ExpectAsync<Containerd.Events.TaskCreate>(EventTopics.TaskCreate);

        var state = await Shim.StateAsync(new StateRequest { Id = "c1" }).ResponseAsync;
        Assert.Equal(created.Pid, state.Pid);
        Assert.Equal(Containerd.V1.Types.Status.Created, state.Status);
    }

    [Fact]
    public async Task Domain_errors_arrive_as_their_wire_codes()
    {
        var notFound = await Assert.ThrowsAsync<TtrpcException>(() => Shim.StateAsync(new StateRequest { Id = "nope" }).ResponseAsync);
        Assert.Equal(TtrpcStatusCode.NotFound, notFound.Code);
        Assert.Equal("task nope not found", notFound.Message);

        var invalid = await Assert.ThrowsAsync<TtrpcException>(() =>
            Shim.CreateAsync(new CreateTaskRequest { Id = "c2", Bundle = Path.Combine(_h.ScratchDirectory, "no-bundle") }).ResponseAsync);
        Assert.Equal(TtrpcStatusCode.InvalidArgument, invalid.Code);
        Assert.StartsWith("cannot read ", invalid.Message, StringComparison.Ordinal);
    }
}
