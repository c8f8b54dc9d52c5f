using System.Net.Sockets;
using System.Threading.Channels;
using Containerd.Task.V2;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Agent.Protocol;
using ShimV2.Shim.Events;
using ShimV2.Shim.Sandbox;
using ShimV2.Shim.Tasks;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Tests;

/// <summary>A TaskService over a fake agent on a real unix socket, fake sandbox/mounter, recorded events.</summary>
internal sealed class TaskServiceHarness : IAsyncDisposable
{
    public const int VmPid = 4242;

    private readonly string _dir = System.IO.Directory.CreateTempSubdirectory("shim-task-").FullName;
    private readonly TtrpcServer _server;
    private readonly Socket _listener;
    private readonly Task _serving;

    /// <param name="events">Where the service publishes; default: <see cref="Events"/>.</param>
    /// <param name="loggerFactory">Where the service logs; default: nowhere.</param>
    public TaskServiceHarness(IEventSink? events = null, Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory = null)
    {
        Agent = new FakeAgent();
        _server = new TtrpcServer([Agent.Definition()], NullLogger.Instance);
        var socket = Path.Combine(_dir, "agent.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socket));
        _listener.Listen();
        _serving = _server.ServeAsync(_listener);
        Launcher = new FakeLauncher(socket, Path.Combine(_dir, "state"));
        Service = new TaskService(
            new ShimContext { Namespace = "default", ContainerdAddress = "/x", TtrpcAddress = "/x.ttrpc", Id = "c1" },
            Launcher,
            new FakeMounter(),
            events ?? Events,
            loggerFactory ?? NullLoggerFactory.Instance);
    }

    public FakeAgent Agent { get; }

    public FakeLauncher Launcher { get; }

    public RecordingEvents Events { get; } = new();

    public TaskService Service { get; }

    /// <summary>A bundle with a config.json and an empty file as the stdout "FIFO".</summary>
    /// <summary>The harness's scratch directory (bundles, state, FIFOs stand-ins).</summary>
    public string ScratchDirectory => _dir;

    public (string Bundle, string Stdout) Bundle(string id, string json = """{"process":{"args":["sh"]}}""")
    {
        var bundle = System.IO.Directory.CreateDirectory(Path.Combine(_dir, "bundles", id)).FullName;
        File.WriteAllText(Path.Combine(bundle, "config.json"), json);
        var stdout = Path.Combine(bundle, "stdout");
        File.WriteAllBytes(stdout, []);
        return (bundle, stdout);
    }

    public async Task<CreateTaskResponse> CreateAsync(string id, string? json = null)
    {
        var (bundle, stdout) = json is null ? Bundle(id) : Bundle(id, json);
        return await Service.CreateAsync(new CreateTaskRequest { Id = id, Bundle = bundle, Stdout = stdout }, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        await Service.DisposeAsync();
        await _server.ShutdownAsync();
        _listener.Dispose();
        await _serving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        System.IO.Directory.Delete(_dir, recursive: true);
    }

    internal sealed class FakeLauncher(string agentSocket, string stateRoot) : ISandboxLauncher
    {
        public TaskCompletionSource? Gate { get; set; }

        public List<FakeSandbox> Launched { get; } = [];

        public List<SandboxLaunchRequest> Requests { get; } = [];

        /// <summary>The sandboxes' agent deadline (the config's agentTimeoutSeconds); null: none.</summary>
        public TimeSpan? AgentTimeout { get; set; }

        public async Task<ISandbox> LaunchAsync(SandboxLaunchRequest request, CancellationToken cancellationToken)
        {
            if (Gate is not null)
            {
                await Gate.Task.WaitAsync(cancellationToken);
            }

            Requests.Add(request);
            var client = await TtrpcClient.ConnectUnixAsync(agentSocket, cancellationToken);
            var sandbox = new FakeSandbox(request.SandboxId, new SandboxPaths(request.SandboxId, stateRoot), new AgentClient(client, AgentTimeout));
            Launched.Add(sandbox);
            return sandbox;
        }
    }

    internal sealed class FakeSandbox(string id, SandboxPaths paths, AgentClient agent) : ISandbox
    {
        private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Id { get; } = id;

        public SandboxPaths Paths { get; } = paths;

        public int Pid => VmPid;

        public AgentClient Agent { get; } = agent;

        public Task Exited => _exited.Task;

        public bool Stopped => _exited.Task.IsCompleted;

        public SandboxSize BootSize { get; } = new(1, 512);

        public SandboxSize Size { get; private set; } = new(1, 512);

        public List<SandboxSize> Grows { get; } = [];

        public Task<SandboxSize> GrowAsync(SandboxSize wanted, CancellationToken cancellationToken)
        {
            Grows.Add(wanted);
            Size = new SandboxSize(Math.Max(Size.Vcpus, wanted.Vcpus), Math.Max(Size.MemoryMiB, wanted.MemoryMiB));
            return Task.FromResult(Size);
        }

        public Task PauseVmAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task ResumeVmAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            _exited.TrySetResult();
            await Agent.Connection.DisposeAsync();
        }

        public ValueTask DisposeAsync() => new(StopAsync(CancellationToken.None));

        /// <summary>Why the VM was terminated, once it was.</summary>
        public string? TerminatedBecause { get; private set; }

        public Task TerminateVmAsync(string reason)
        {
            TerminatedBecause = reason;
            _exited.TrySetResult();
            Agent.Connection.Abort(new IOException("the VM was stopped"));
            return Task.CompletedTask;
        }
    }

    internal sealed class FakeMounter : IRootfsMounter
    {
        public void Mount(IReadOnlyList<Containerd.Types.Mount> mounts, string bundleRootfs, string target) => Directory.CreateDirectory(target);

        public void Bind(string source, string target, bool isDirectory, bool readOnly) => Directory.CreateDirectory(target);

        public void Unmount(string target)
        {
        }

        public void RemoveTree(string directory)
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }

    internal sealed class RecordingEvents : IEventSink
    {
        private readonly Channel<(string Topic, IMessage Message)> _channel = Channel.CreateUnbounded<(string, IMessage)>();

        public List<(string Topic, IMessage Message)> Seen { get; } = [];

        public void Publish(string topic, IMessage message) => _channel.Writer.TryWrite((topic, message));

        /// <summary>Waits for the next event (bounded), so tests never sleep.</summary>
        public async Task<(string Topic, IMessage Message)> NextAsync()
        {
            var e = await _channel.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            Seen.Add(e);
            return e;
        }

        public async Task<T> ExpectAsync<T>(string topic)
            where T : IMessage
        {
            var (t, m) = await NextAsync();
            Assert.Equal(topic, t);
            return Assert.IsType<T>(m);
        }
    }
}
