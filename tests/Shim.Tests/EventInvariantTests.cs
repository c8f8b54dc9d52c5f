using Containerd.Events;
using Containerd.Task.V2;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using ShimV2.Shim.Events;

namespace ShimV2.Shim.Tests;

/// <summary>
/// Random interleavings of guest exits, kills, deletes, execs, OOMs and containerd outages, through the real task
/// service, processes and event publisher (fake agent, fake containerd); the invariants are checked on what
/// containerd received.
/// </summary>
public sealed class EventInvariantTests
{
    private const int Iterations = 40;
    private const string Pod = "pod";

    private static readonly EventPublisherOptions FastRetries = new()
    {
        CallTimeout = TimeSpan.FromSeconds(1),
        FirstRetryDelay = TimeSpan.FromMilliseconds(1),
        MaxRetryDelay = TimeSpan.FromMilliseconds(20),
        GiveUpAfter = TimeSpan.FromHours(1),
    };

    [Fact]
    public async Task Random_interleavings_keep_every_event_invariant()
    {
        for (var seed = 1; seed <= Iterations; seed++)
        {
            await RunAsync(seed);
        }
    }

    [Fact]
    public async Task Events_queued_while_containerd_is_away_arrive_in_order_when_it_comes_back()
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("shim-events-").FullName;
        try
        {
            await using var containerd = new FakeContainerdEvents(dir) { Away = true };
            var publisher = new EventPublisher("/x", "default", NullLogger.Instance, containerd.ConnectAsync, FastRetries);
            for (var i = 0; i < 50; i++)
            {
                publisher.Publish(EventTopics.TaskExecAdded, new TaskExecAdded { ContainerId = "c", ExecId = $"e{i}" });
            }

            // The outage outlasts many retries; nothing may be lost or reordered.
            await containerd.ManyRefused.WaitAsync(TimeSpan.FromSeconds(60));
            containerd.Away = false;
            await publisher.DisposeAsync();
            Assert.Equal(
                Enumerable.Range(0, 50).Select(i => $"e{i}"),
                containerd.Received.Select(r => ((TaskExecAdded)r.Event).ExecId));
        }
        finally
        {
            System.IO.Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task RunAsync(int seed)
    {
        var random = new Random(seed);
        var dir = System.IO.Directory.CreateTempSubdirectory("shim-inv-").FullName;
        var containerd = new FakeContainerdEvents(dir);
        var publisher = new EventPublisher("/x", "default", NullLogger.Instance, containerd.ConnectAsync, FastRetries);
        var h = new TaskServiceHarness(publisher);
        h.Agent.InitTakesExecs = true;
        var world = new World(h, dir) { Containerd = containerd };
        containerd.Snapshot = world.SnapshotOutput;
        try
        {
            for (var step = 0; step < 40; step++)
            {
                var batch = Enumerable.Range(0, random.Next(1, 4)).Select(_ => world.RandomStepAsync(random)).ToList();
                await Task.WhenAll(batch);
            }

            containerd.Away = false;
            await world.EndAllAsync();
            await publisher.DisposeAsync();
            await h.DisposeAsync();
            Invariants.Check(containerd.Received, world, seed);
        }
        finally
        {
            await containerd.DisposeAsync();
            System.IO.Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The test's model of what it did: containers, execs, what each process printed, which died of OOM.</summary>
    private sealed class World(TaskServiceHarness h, string dir)
    {
        private int _next;

        public HashSet<string> Containers { get; } = [];

        public Dictionary<string, string> Output { get; } = [];

        public Dictionary<string, string> OutputFile { get; } = [];

        public HashSet<string> OomKilled { get; } = [];

        public FakeContainerdEvents? Containerd { get; set; }

        public string? SnapshotOutput(string topic, IMessage message)
        {
            if (message is not TaskExit exit)
            {
                return null;
            }

            lock (OutputFile)
            {
                return OutputFile.TryGetValue(Key(exit.ContainerId, exit.Id), out var file) ? File.ReadAllText(file) : null;
            }
        }

        public static string Key(string container, string eventId) => $"{container}/{eventId}";

        public async Task RandomStepAsync(Random random)
        {
            string[] containers;
            lock (Containers)
            {
                containers = [.. Containers];
            }

            var c = containers.Length == 0 || random.Next(6) == 0 ? $"c{Interlocked.Increment(ref _next)}" : containers[random.Next(containers.Length)];
            try
            {
                switch (random.Next(9))
                {
                    case 0 when !containers.Contains(c):
                    case 1 when !containers.Contains(c):
                        await CreateStartAsync(c, start: random.Next(4) != 0);
                        break;
                    case 2 or 3:
                        await ExecAsync(c, random, start: random.Next(5) != 0);
                        break;
                    case 4:
                        GuestExit(c, random);
                        break;
                    case 5:
                        await h.Service.KillAsync(new KillRequest { Id = c, ExecId = RandomProcess(c, random), Signal = 9, All = random.Next(3) == 0 }, CancellationToken.None);
                        break;
                    case 6:
                        await DeleteAsync(c, RandomProcess(c, random));
                        break;
                    case 7:
                        Oom(c);
                        break;
                    case 8 when Containerd is { } containerd:
                        containerd.Away = !containerd.Away;
                        break;
                    default:
                        break;
                }
            }
            catch (ShimException e) when (e.Kind is ErrorKind.NotFound or ErrorKind.FailedPrecondition or ErrorKind.AlreadyExists)
            {
                // A race the API answers with a refusal: allowed.
            }
        }

        public async Task EndAllAsync()
        {
            foreach (var c in Containers.ToList())
            {
                foreach (var p in h.Agent.Processes.Values.Where(p => p.ContainerId == c))
                {
                    p.End(0);
                }

                try
                {
                    // A created, never started init ends with a kill, as containerd ends it.
                    await h.Service.KillAsync(new KillRequest { Id = c, Signal = 9, All = true }, CancellationToken.None);
                    await h.Service.WaitAsync(new WaitRequest { Id = c }, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
                }
                catch (ShimException e) when (e.Kind == ErrorKind.NotFound)
                {
                    continue;
                }

                foreach (var exec in h.Agent.Processes.Values.Where(p => p.ContainerId == c && p.ExecId.Length > 0).Select(p => p.ExecId).ToList())
                {
                    await DeleteAsync(c, exec).ContinueWith(_ => { }, TaskScheduler.Default);
                }

                await h.Service.DeleteAsync(new DeleteRequest { Id = c }, CancellationToken.None);
            }
        }

        private async Task CreateStartAsync(string c, bool start)
        {
            var (bundle, stdout) = h.Bundle(c, $$$"""{"annotations":{"io.kubernetes.cri.sandbox-id":"{{{Pod}}}"}}""");
            lock (OutputFile)
            {
                OutputFile[Key(c, c)] = stdout;
            }

            await h.Service.CreateAsync(new CreateTaskRequest { Id = c, Bundle = bundle, Stdout = stdout }, CancellationToken.None);
            lock (Containers)
            {
                Containers.Add(c);
            }

            if (start)
            {
                await h.Service.StartAsync(new StartRequest { Id = c }, CancellationToken.None);
            }
        }

        private async Task ExecAsync(string c, Random random, bool start)
        {
            var e = $"e{Interlocked.Increment(ref _next)}";
            var stdout = Path.Combine(dir, $"{c}-{e}.out");
            File.WriteAllBytes(stdout, []);
            lock (OutputFile)
            {
                OutputFile[Key(c, e)] = stdout;
            }

            await h.Service.ExecAsync(new Containerd.Task.V2.ExecProcessRequest
            {
                Id = c,
                ExecId = e,
                Stdout = stdout,
                Spec = new Any { TypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process", Value = ByteString.CopyFromUtf8("""{"args":["true"]}""") },
            });
            if (start)
            {
                await h.Service.StartAsync(new StartRequest { Id = c, ExecId = e }, CancellationToken.None);
                if (random.Next(2) == 0)
                {
                    GuestExit(c, random, e);
                }
            }
        }

        private void GuestExit(string c, Random random, string? execId = null)
        {
            var id = execId ?? RandomProcess(c, random);
            if (h.Agent.Processes.TryGetValue($"{c}/{id}", out var p) && !p.Exit.Task.IsCompleted)
            {
                var output = $"out-{c}-{id}-{random.Next(1000)}\n";
                var key = Key(c, id.Length == 0 ? c : id);
                lock (Output)
                {
                    Output[key] = output;
                }

                if (!p.End((uint)random.Next(3), output))
                {
                    lock (Output)
                    {
                        Output.Remove(key);
                    }
                }
            }
        }

        private void Oom(string c)
        {
            if (h.Agent.Processes.TryGetValue($"{c}/", out var p) && !p.Exit.Task.IsCompleted)
            {
                lock (OomKilled)
                {
                    OomKilled.Add(c);
                }

                h.Agent.Oom(c);
            }
        }

        private string RandomProcess(string c, Random random)
        {
            var execs = h.Agent.Processes.Values.Where(p => p.ContainerId == c && p.ExecId.Length > 0).Select(p => p.ExecId).ToList();
            return execs.Count == 0 || random.Next(3) == 0 ? string.Empty : execs[random.Next(execs.Count)];
        }

        private async Task DeleteAsync(string c, string execId)
        {
            await h.Service.DeleteAsync(new DeleteRequest { Id = c, ExecId = execId }, CancellationToken.None);
            if (execId.Length == 0)
            {
                lock (Containers)
                {
                    Containers.Remove(c);
                }
            }
        }
    }

    private static class Invariants
    {
        public static void Check(List<(string Topic, IMessage Event, string? Snapshot)> received, World world, int seed)
        {
            var log = string.Join("\n", received.Select(r => $"{r.Topic} {r.Event}").TakeLast(25));
            void Require(bool ok, string what)
            {
                Assert.True(ok, $"seed {seed}: {what}\nlast events of {received.Count}:\n{log}");
            }

            var byProcess = new Dictionary<string, List<(int Index, string Topic, string? Snapshot)>>();
            var deleted = new HashSet<string>();
            for (var i = 0; i < received.Count; i++)
            {
                var (topic, e, snapshot) = received[i];
                var (container, process) = e switch
                {
                    TaskCreate m => (m.ContainerId, m.ContainerId),
                    TaskStart m => (m.ContainerId, m.ContainerId),
                    TaskExit m => (m.ContainerId, m.Id),
                    TaskDelete m => (m.ContainerId, m.ContainerId),
                    TaskExecAdded m => (m.ContainerId, m.ExecId),
                    TaskExecStarted m => (m.ContainerId, m.ExecId),
                    TaskOOM m => (m.ContainerId, m.ContainerId),
                    _ => (string.Empty, string.Empty),
                };
                Require(!deleted.Contains(container), $"{topic} for {container}/{process} after the container's delete (#{i})");
                if (topic == EventTopics.TaskDelete)
                {
                    deleted.Add(container);
                }

                var key = World.Key(container, process);
                if (!byProcess.TryGetValue(key, out var list))
                {
                    byProcess[key] = list = [];
                }

                list.Add((i, topic, snapshot));
            }

            foreach (var (key, events) in byProcess)
            {
                var topics = events.Select(e => e.Topic).ToList();
                var exits = events.Where(e => e.Topic == EventTopics.TaskExit).ToList();
                var isInit = topics.Contains(EventTopics.TaskCreate);
                var started = topics.Contains(isInit ? EventTopics.TaskStart : EventTopics.TaskExecStarted);
                Require(exits.Count <= 1, $"{key}: {exits.Count} exits");
                if (isInit)
                {
                    Require(topics[0] == EventTopics.TaskCreate, $"{key}: first event is {topics[0]}");
                    Require(exits.Count == 1 && topics.Contains(EventTopics.TaskDelete), $"{key}: no exit and delete ({string.Join(",", topics)})");
                    Require(topics.IndexOf(EventTopics.TaskExit) < topics.IndexOf(EventTopics.TaskDelete), $"{key}: exit after delete");
                    if (started)
                    {
                        Require(topics.IndexOf(EventTopics.TaskStart) < topics.IndexOf(EventTopics.TaskExit), $"{key}: exit before start");
                    }
                }
                else
                {
                    Require(exits.Count == (started ? 1 : 0), $"{key}: started={started} but {exits.Count} exits");
                    if (started)
                    {
                        Require(topics.IndexOf(EventTopics.TaskExecStarted) < topics.IndexOf(EventTopics.TaskExit), $"{key}: exit before exec-started");
                    }
                }

                if (exits.Count == 1 && world.Output.TryGetValue(key, out var output))
                {
                    Require(exits[0].Snapshot == output, $"{key}: output at exit was '{exits[0].Snapshot}', not '{output.TrimEnd()}'");
                }
            }

            foreach (var init in byProcess.Keys.Where(k => byProcess[k][0].Topic == EventTopics.TaskCreate))
            {
                var container = init.Split('/')[0];
                var initExit = byProcess[init].First(e => e.Topic == EventTopics.TaskExit).Index;
                foreach (var (key, events) in byProcess.Where(p => p.Key.StartsWith(container + "/", StringComparison.Ordinal) && p.Key != init))
                {
                    foreach (var exit in events.Where(e => e.Topic == EventTopics.TaskExit))
                    {
                        Require(exit.Index < initExit, $"{key}: exec exit after its init's ({init})");
                    }
                }

                if (world.OomKilled.Contains(container))
                {
                    Require(
                        byProcess[init].Any(e => e.Topic == EventTopics.TaskOom && e.Index < initExit),
                        $"{init}: OOM-killed but no TaskOOM before its exit");
                }

                // The test OOM-kills a container at most once; the queue's entry and the exit's flag are one kill.
                Require(byProcess[init].Count(e => e.Topic == EventTopics.TaskOom) <= 1, $"{init}: more than one TaskOOM for one OOM kill");
            }
        }
    }
}
