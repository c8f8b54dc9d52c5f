using System.Diagnostics;
using Grpc.Core;
using ShimV2.Cri;
using ShimV2.Cri.V1;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// One pod sandbox made through CRI the way kubelet makes one: RunPodSandbox with the runtime handler under test,
/// kubelet's namespace defaults (network and IPC shared by the pod, a PID namespace per container), a log directory
/// of the pod's own, then containers created and started in it with the same sandbox config. Every call is written
/// to the scenario's output with its time. Disposing stops and removes the sandbox if the test did not (best effort).
/// </summary>
public sealed class CriPod : IAsyncDisposable
{
    private readonly Scenario _scenario;
    private bool _removed;

    private CriPod(CriClient cri, Scenario scenario, PodSandboxConfig config, string id)
    {
        Cri = cri;
        _scenario = scenario;
        Config = config;
        Id = id;
    }

    public CriClient Cri { get; }

    public PodSandboxConfig Config { get; }

    public string Id { get; }

    /// <summary>Where CRI writes this pod's container logs (kubelet's /var/log/pods/&lt;ns&gt;_&lt;name&gt;_&lt;uid&gt;).</summary>
    public string LogDirectory => Config.LogDirectory;

    public static async Task<CriPod> RunAsync(CriClient cri, Scenario scenario, string name, Action<PodSandboxConfig>? configure = null)
    {
        var uid = Guid.NewGuid().ToString();
        var config = new PodSandboxConfig
        {
            Metadata = new PodSandboxMetadata { Name = name, Uid = uid, Namespace = "e2e", Attempt = 0 },
            Hostname = name,
            LogDirectory = Path.Combine(scenario.Containerd.Directory, "pods", $"e2e_{name}_{uid}"),
            Linux = new LinuxPodSandboxConfig
            {
                SecurityContext = new LinuxSandboxSecurityContext
                {
                    NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
                },
            },
        };
        config.Labels.Add("io.kubernetes.pod.name", name);
        configure?.Invoke(config);
        Directory.CreateDirectory(config.LogDirectory);
        var response = await Call(scenario, $"RunPodSandbox {name} (handler {E2EEnvironment.CriRuntimeHandler})", () =>
            cri.Runtime.RunPodSandboxAsync(
                new RunPodSandboxRequest { Config = config, RuntimeHandler = E2EEnvironment.CriRuntimeHandler },
                deadline: Deadline(Ctr.BootTimeout)).ResponseAsync);
        scenario.Track(response.PodSandboxId);
        return new CriPod(cri, scenario, config, response.PodSandboxId);
    }

    /// <summary>CreateContainer + StartContainer of busybox running <paramref name="command"/>; its log goes to
    /// &lt;log directory&gt;/&lt;name&gt;/0.log as kubelet names it.</summary>
    public Task<string> StartContainerAsync(string name, params string[] command) => StartContainerAsync(name, _ => { }, command);

    /// <summary>As <see cref="StartContainerAsync(string, string[])"/>, with the container config adjusted by
    /// <paramref name="configure"/> first (security context, mounts, another image).</summary>
    public async Task<string> StartContainerAsync(string name, Action<ContainerConfig> configure, params string[] command)
    {
        var config = new ContainerConfig
        {
            Metadata = new ContainerMetadata { Name = name, Attempt = 0 },
            Image = new ImageSpec { Image = E2EEnvironment.Image },
            LogPath = Path.Combine(name, "0.log"),
            Linux = new LinuxContainerConfig
            {
                Resources = new LinuxContainerResources(),
                SecurityContext = new LinuxContainerSecurityContext
                {
                    NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
                },
            },
        };
        config.Command.AddRange(command);
        config.Labels.Add("io.kubernetes.container.name", name);
        configure(config);
        var created = await Call(_scenario, $"CreateContainer {name}", () => Cri.Runtime.CreateContainerAsync(
            new CreateContainerRequest { PodSandboxId = Id, Config = config, SandboxConfig = Config },
            deadline: Deadline(Ctr.BootTimeout)).ResponseAsync);
        _scenario.Track(created.ContainerId);
        await Call(_scenario, $"StartContainer {name} {created.ContainerId}", () => Cri.Runtime.StartContainerAsync(
            new StartContainerRequest { ContainerId = created.ContainerId },
            deadline: Deadline(Ctr.BootTimeout)).ResponseAsync);
        return created.ContainerId;
    }

    public Task<ExecSyncResponse> ExecSyncAsync(string containerId, long timeoutSeconds, params string[] cmd)
    {
        var request = new ExecSyncRequest { ContainerId = containerId, Timeout = timeoutSeconds };
        request.Cmd.AddRange(cmd);
        return Call(_scenario, $"ExecSync {containerId} (timeout {timeoutSeconds} s) {string.Join(' ', cmd)}", () =>
            Cri.Runtime.ExecSyncAsync(request, deadline: Deadline(TimeSpan.FromSeconds(timeoutSeconds + 60))).ResponseAsync);
    }

    /// <summary>ExecSync that must succeed: its stdout as text.</summary>
    public async Task<string> ExecOkAsync(string containerId, params string[] cmd)
    {
        var r = await ExecSyncAsync(containerId, 60, cmd);
        Assert.True(r.ExitCode == 0, $"{string.Join(' ', cmd)} exited {r.ExitCode}; stderr: {r.Stderr.ToStringUtf8()}");
        return r.Stdout.ToStringUtf8();
    }

    public Task<ContainerStatus> ContainerStatusAsync(string containerId) =>
        Call(_scenario, $"ContainerStatus {containerId}", async () => (await Cri.Runtime.ContainerStatusAsync(
            new ContainerStatusRequest { ContainerId = containerId }, deadline: Deadline(Ctr.CtrTimeout))).Status);

    public Task<PodSandboxStatusResponse> StatusAsync(bool verbose = false) =>
        Call(_scenario, $"PodSandboxStatus {Id}", () => Cri.Runtime.PodSandboxStatusAsync(
            new PodSandboxStatusRequest { PodSandboxId = Id, Verbose = verbose }, deadline: Deadline(Ctr.CtrTimeout)).ResponseAsync);

    public async Task<IReadOnlyList<Container>> ListContainersAsync()
    {
        var r = await Call(_scenario, $"ListContainers pod {Id}", () => Cri.Runtime.ListContainersAsync(
            new ListContainersRequest { Filter = new ContainerFilter { PodSandboxId = Id } }, deadline: Deadline(Ctr.CtrTimeout)).ResponseAsync);
        return r.Containers;
    }

    public Task StopContainerAsync(string containerId, long timeoutSeconds) =>
        Call(_scenario, $"StopContainer {containerId} (grace {timeoutSeconds} s)", () => Cri.Runtime.StopContainerAsync(
            new StopContainerRequest { ContainerId = containerId, Timeout = timeoutSeconds },
            deadline: Deadline(TimeSpan.FromSeconds(timeoutSeconds + 60))).ResponseAsync);

    public Task RemoveContainerAsync(string containerId) =>
        Call(_scenario, $"RemoveContainer {containerId}", () => Cri.Runtime.RemoveContainerAsync(
            new RemoveContainerRequest { ContainerId = containerId }, deadline: Deadline(Ctr.BootTimeout)).ResponseAsync);

    /// <summary>StopPodSandbox then RemovePodSandbox, as kubelet tears a pod down.</summary>
    public async Task StopAndRemoveAsync()
    {
        await Call(_scenario, $"StopPodSandbox {Id}", () => Cri.Runtime.StopPodSandboxAsync(
            new StopPodSandboxRequest { PodSandboxId = Id }, deadline: Deadline(Ctr.BootTimeout)).ResponseAsync);
        await Call(_scenario, $"RemovePodSandbox {Id}", () => Cri.Runtime.RemovePodSandboxAsync(
            new RemovePodSandboxRequest { PodSandboxId = Id }, deadline: Deadline(Ctr.BootTimeout)).ResponseAsync);
        _removed = true;
    }

    public async ValueTask DisposeAsync()
    {
        if (_removed)
        {
            return;
        }

        try
        {
            await StopAndRemoveAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            _scenario.Write($"cleanup of pod {Id}: {e.Message}");
        }
    }

    public static DateTime Deadline(TimeSpan timeout) => DateTime.UtcNow + timeout;

    /// <summary>Runs one CRI call, writing it, its time and its outcome to the scenario's output.</summary>
    public static async Task<T> Call<T>(Scenario scenario, string what, Func<Task<T>> call)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            var result = await call();
            scenario.Write($"cri {what}: ok ({clock.Elapsed.TotalSeconds:0.00} s)");
            return result;
        }
        catch (RpcException e)
        {
            scenario.Write($"cri {what}: {e.StatusCode} \"{e.Status.Detail}\" ({clock.Elapsed.TotalSeconds:0.00} s)");
            throw;
        }
    }
}
