using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Grpc.Core;
using ShimV2.Bench;
using ShimV2.Cri;
using ShimV2.Cri.V1;

// Results go to stdout as tab-separated records for eng/bench/run.sh; progress and errors to stderr.
//   pod       HANDLER  SANDBOX_MS  CONTAINER_MS  POD_PSS_KIB
//   density   HANDLER  STARTED     ANSWERING     MEMAVAILABLE_DROP_KIB  PSS_KIB_TOTAL  FIRST_FAILURE
var options = BenchOptions.Parse(args);
if (options is null)
{
    Console.Error.WriteLine("usage: CriBench --socket PATH --image REF --pods-dir DIR [--handlers \"csharp runc\"] [--n N] [--density K] [--density-handler H]");
    return 2;
}

using var cri = CriClient.ForUnixSocket(options.Socket);
var bench = new PodBench(cri, options);
try
{
    foreach (var handler in options.Handlers)
    {
        // One untimed pod first: image unpacking, CNI's first bridge set-up, caches.
        await bench.TimeOnePodAsync(handler, "warm-up");
        for (var i = 0; i < options.N; i++)
        {
            var (sandboxMs, containerMs, pssKib) = await bench.TimeOnePodAsync(handler, $"run{i}");
            Console.Error.WriteLine($"CriBench: {handler}: pod {i + 1}/{options.N}: sandbox {sandboxMs} ms, container {containerMs} ms");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pod\t{handler}\t{sandboxMs}\t{containerMs}\t{pssKib}"));
        }
    }

    if (options.Density > 0)
    {
        var d = await bench.DensityAsync(options.DensityHandler, options.Density);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"density\t{options.DensityHandler}\t{d.Started}\t{d.Answering}\t{d.MemAvailableDropKib}\t{d.PssKib}\t{d.FirstFailure ?? "-"}"));
    }

    return 0;
}
catch (RpcException e)
{
    Console.Error.WriteLine($"CriBench: {e.Status.Detail} ({e.StatusCode})");
    return 1;
}

namespace ShimV2.Bench
{
    internal sealed record BenchOptions(string Socket, string Image, string PodsDir, IReadOnlyList<string> Handlers, int N, int Density, string DensityHandler)
    {
        public static BenchOptions? Parse(string[] args)
        {
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i + 1 < args.Length; i += 2)
            {
                map[args[i]] = args[i + 1];
            }

            if (!map.TryGetValue("--socket", out var socket) || !map.TryGetValue("--image", out var image) || !map.TryGetValue("--pods-dir", out var pods))
            {
                return null;
            }

            var handlers = map.GetValueOrDefault("--handlers", "csharp runc").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var n = int.Parse(map.GetValueOrDefault("--n", "3"), CultureInfo.InvariantCulture);
            var density = int.Parse(map.GetValueOrDefault("--density", "0"), CultureInfo.InvariantCulture);
            return new BenchOptions(socket, image, pods, handlers, n, density, map.GetValueOrDefault("--density-handler", "csharp"));
        }
    }

    internal sealed record DensityResult(int Started, int Answering, long MemAvailableDropKib, long PssKib, string? FirstFailure);

    /// <summary>Pods made as kubelet makes them: RunPodSandbox, then CreateContainer + StartContainer of one busybox
    /// `sleep`, with kubelet's namespace defaults.</summary>
    internal sealed class PodBench(CriClient cri, BenchOptions options)
    {
        private static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(5);

        /// <summary>Times one pod's sandbox and its container's create+start, measures the pod's memory, removes it.</summary>
        public async Task<(long SandboxMs, long ContainerMs, long PssKib)> TimeOnePodAsync(string handler, string tag)
        {
            var clock = Stopwatch.StartNew();
            var (id, config) = await RunSandboxAsync(handler, $"bench-{tag}");
            var sandboxMs = clock.ElapsedMilliseconds;
            try
            {
                clock.Restart();
                await StartSleeperAsync(id, config);
                var containerMs = clock.ElapsedMilliseconds;
                var pss = PodMemory.PssKib(await SandboxPidAsync(id));
                return (sandboxMs, containerMs, pss);
            }
            finally
            {
                await RemoveAsync(id);
            }
        }

        /// <summary>Starts <paramref name="count"/> idle pods one after another, then asks each for an ExecSync; reports how
        /// many started and answered, how much MemAvailable dropped, and the pods' summed PSS. Removes them all.</summary>
        public async Task<DensityResult> DensityAsync(string handler, int count)
        {
            var before = PodMemory.MemAvailableKib();
            var pods = new List<string>();
            string? failure = null;
            try
            {
                for (var i = 0; i < count && failure is null; i++)
                {
                    try
                    {
                        var (id, config) = await RunSandboxAsync(handler, $"density-{i}");
                        pods.Add(id);
                        await StartSleeperAsync(id, config);
                        Console.Error.WriteLine($"CriBench: density pod {i + 1}/{count} up, MemAvailable {PodMemory.MemAvailableKib() / 1024} MiB");
                    }
                    catch (RpcException e)
                    {
                        failure = $"pod {i + 1}: {e.Status.Detail}";
                    }
                }

                var answering = 0;
                long pss = 0;
                foreach (var id in pods)
                {
                    var containers = await cri.Runtime.ListContainersAsync(
                        new ListContainersRequest { Filter = new ContainerFilter { PodSandboxId = id } }, deadline: Deadline());
                    foreach (var c in containers.Containers)
                    {
                        var r = await cri.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = c.Id, Cmd = { "echo", "ok" }, Timeout = 60 }, deadline: Deadline());
                        if (r.ExitCode == 0 && r.Stdout.ToStringUtf8().Trim() == "ok")
                        {
                            answering++;
                        }
                    }

                    pss += PodMemory.PssKib(await SandboxPidAsync(id));
                }

                return new DensityResult(pods.Count, answering, before - PodMemory.MemAvailableKib(), pss, failure);
            }
            finally
            {
                foreach (var id in pods)
                {
                    await RemoveAsync(id);
                }
            }
        }

        private async Task<(string Id, PodSandboxConfig Config)> RunSandboxAsync(string handler, string name)
        {
            Console.Error.WriteLine($"CriBench: {handler}: RunPodSandbox {name}");
            var uid = Guid.NewGuid().ToString();
            var config = new PodSandboxConfig
            {
                Metadata = new PodSandboxMetadata { Name = name, Uid = uid, Namespace = "bench", Attempt = 0 },
                Hostname = name,
                LogDirectory = Path.Combine(options.PodsDir, $"bench_{name}_{uid}"),
                Linux = new LinuxPodSandboxConfig
                {
                    SecurityContext = new LinuxSandboxSecurityContext
                    {
                        NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
                    },
                },
            };
            Directory.CreateDirectory(config.LogDirectory);
            var r = await cri.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config, RuntimeHandler = handler }, deadline: Deadline());
            return (r.PodSandboxId, config);
        }

        private async Task StartSleeperAsync(string sandboxId, PodSandboxConfig sandbox)
        {
            var config = new ContainerConfig
            {
                Metadata = new ContainerMetadata { Name = "sleeper" },
                Image = new ImageSpec { Image = options.Image },
                Command = { "sleep", "100000" },
                LogPath = "sleeper/0.log",
            };
            var c = await cri.Runtime.CreateContainerAsync(
                new CreateContainerRequest { PodSandboxId = sandboxId, Config = config, SandboxConfig = sandbox }, deadline: Deadline());
            await cri.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = c.ContainerId }, deadline: Deadline());
        }

        /// <summary>The sandbox task's pid from containerd's verbose status ("info" JSON, field "pid"): the pause process
        /// under runc and runsc's sandbox under gVisor, the pod's QEMU under ours.</summary>
        private async Task<int> SandboxPidAsync(string id)
        {
            var status = await cri.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = id, Verbose = true }, deadline: Deadline());
            if (status.Info.TryGetValue("info", out var info))
            {
                using var doc = JsonDocument.Parse(info);
                if (doc.RootElement.TryGetProperty("pid", out var pid))
                {
                    return pid.GetInt32();
                }
            }

            return 0;
        }

        private async Task RemoveAsync(string id)
        {
            try
            {
                await cri.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = id }, deadline: Deadline());
                await cri.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id }, deadline: Deadline());
            }
            catch (RpcException e)
            {
                Console.Error.WriteLine($"CriBench: removing pod {id}: {e.Status.Detail}");
                throw;
            }
        }

        private static DateTime Deadline() => DateTime.UtcNow + CallTimeout;
    }

    /// <summary>Memory of a pod on the host, the same way for every runtime: the proportional set size of the pod's
    /// shim and everything under it (QEMU for ours; pause and the containers for runc; runsc's sandbox and gofer).</summary>
    internal static class PodMemory
    {
        public static long PssKib(int sandboxPid)
        {
            if (sandboxPid <= 0)
            {
                return 0;
            }

            var shim = ParentOf(sandboxPid);
            var root = shim > 1 && Comm(shim).StartsWith("containerd-shim", StringComparison.Ordinal) ? shim : sandboxPid;
            return Tree(root).Sum(Pss);
        }

        public static long MemAvailableKib() =>
            File.ReadLines("/proc/meminfo").Where(l => l.StartsWith("MemAvailable:", StringComparison.Ordinal))
                .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture)).FirstOrDefault();

        private static IEnumerable<int> Tree(int root)
        {
            var children = new Dictionary<int, List<int>>();
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (int.TryParse(Path.GetFileName(dir), out var pid) && ParentOf(pid) is var ppid and > 0)
                {
                    (children.TryGetValue(ppid, out var list) ? list : children[ppid] = []).Add(pid);
                }
            }

            var stack = new Stack<int>([root]);
            while (stack.TryPop(out var pid))
            {
                yield return pid;
                foreach (var child in children.GetValueOrDefault(pid) ?? [])
                {
                    stack.Push(child);
                }
            }
        }

        private static int ParentOf(int pid) => Field($"/proc/{pid}/status", "PPid:");

        private static long Pss(int pid) => Field($"/proc/{pid}/smaps_rollup", "Pss:");

        private static string Comm(int pid)
        {
            try
            {
                return File.ReadAllText($"/proc/{pid}/comm").Trim();
            }
            catch (IOException)
            {
                return "";
            }
        }

        private static int Field(string path, string name)
        {
            try
            {
                foreach (var line in File.ReadLines(path))
                {
                    if (line.StartsWith(name, StringComparison.Ordinal))
                    {
                        return int.Parse(line.AsSpan(name.Length).Trim().ToString().Split(' ')[0], CultureInfo.InvariantCulture);
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The process went away while we looked.
            }

            return 0;
        }
    }
}
