using ShimV2.Agent.Protocol.V1;

namespace ShimV2.GuestAgent.Tests.Vm;

[CollectionDefinition(Name)]
public sealed class AgentLifecycleCollection : ICollectionFixture<AgentVm>
{
    public const string Name = "agent vm lifecycle";
}

/// <summary>A VM of its own: the host reconnects, then destroys the sandbox and the guest powers off.</summary>
[Collection(AgentLifecycleCollection.Name)]
public sealed class AgentLifecycleTests(AgentVm vm)
{
    [VmFact]
    public async Task The_agent_serves_a_new_connection_and_powers_off_after_DestroySandbox()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var (id, pid) = await vm.CreateAsync(["sleep", "1000"]);
        await vm.Agent!.StartContainerAsync(new StartContainerRequest { ContainerId = id });

        await vm.ReconnectAsync(timeout.Token);
        var check = await vm.Agent!.CheckAsync(new CheckRequest(), null, timeout.Token);
        Assert.Contains("virtio-serial", check.Transports);
        var list = await vm.Agent.ListProcessesAsync(new ContainerRequest { ContainerId = id }, null, timeout.Token);
        Assert.Contains(list.Processes, p => p.Pid == pid);

        await vm.Agent.DestroySandboxAsync(new DestroySandboxRequest(), null, timeout.Token);
        await vm.Connection!.DisposeAsync();
        var exited = await Task.WhenAny(vm.Vm!.Exited, Task.Delay(Timeout.Infinite, timeout.Token));
        Assert.True(exited == vm.Vm.Exited, $"the VM did not power off after DestroySandbox\n{vm.ConsoleTail()}");
        Assert.Contains("powering off: the sandbox was destroyed", await File.ReadAllTextAsync(vm.ConsoleLog), StringComparison.Ordinal);
    }
}
