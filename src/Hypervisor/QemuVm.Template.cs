using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ShimV2.Hypervisor.Templates;

namespace ShimV2.Hypervisor;

/// <summary>How a VM may start from a template (Kata's "factory"): where templates are kept, and how to tell that a
/// freshly booted template guest is ready to be saved (the hypervisor layer does not speak the agent's protocol).</summary>
public sealed record VmTemplateOptions(VmTemplateStore Store, Func<QemuVm, CancellationToken, Task> WaitForGuestAsync);

/// <summary>
/// VM templates: a guest booted once per config, paused after its agent answered, its device state saved with
/// x-ignore-shared (its RAM stays in the template's memory file); each pod's QEMU then maps that file
/// copy-on-write, loads the device state (-incoming defer, migrate-incoming) and continues, instead of booting.
/// </summary>
public sealed partial class QemuVm
{
    private const string MigrationSocketName = "migrate.sock";
    private static readonly TimeSpan MigrationPollInterval = TimeSpan.FromMilliseconds(10);

    /// <summary>The template this VM was restored from; null when it booted cold.</summary>
    public VmTemplate? RestoredFrom { get; private set; }

    /// <summary>When the restored guest was continued (Stopwatch ticks); 0 for a cold boot.</summary>
    public long RestoredAt { get; private set; }

    /// <summary>Like <see cref="StartAsync(VmSpec, ILoggerFactory, CancellationToken)"/>, restoring the guest from the
    /// config's template where the pod allows it (building the template first when there is none and nobody else
    /// is building it); anything that stops the template path is logged and the VM boots cold.</summary>
    public static Task<QemuVm> StartAsync(VmSpec spec, ILoggerFactory loggerFactory, VmTemplateOptions? templates, CancellationToken ct) =>
        StartAsync(spec, loggerFactory, VmHost.Default with { Templates = templates }, ct);

    /// <summary>Why this pod cannot start from a template, or null when it can.</summary>
    internal static string? TemplateRefusal(VmSpec spec, HostResolution host, VmHost vmHost)
    {
        var config = spec.Config;
        if (spec.Nics.Count > 0 && spec.NetworkNamespace is null)
        {
            return "the pod's NICs have no network namespace (the template VM's taps are made in the pod's)";
        }

        if (config.SharedFs == "virtio-fs")
        {
            return "sharedFs is virtio-fs (QEMU cannot save a VM with a vhost-user-fs device)";
        }

        if (host.Transport == AgentTransportKind.Vsock)
        {
            return "the agent transport is vsock (templates are made for virtio-serial)";
        }

        if ((spec.SharedDirectory is not null) != (config.SharedFs == "virtio-9p"))
        {
            return "the pod's share does not match the config's sharedFs";
        }

        return vmHost.StandIn is not null ? "a KVM stand-in is configured" : null;
    }

    /// <summary>Why no template of <paramref name="store"/> can serve, or null. The template VM's sockets and a
    /// restore's migration socket live in the store: a path too long to bind would fail every restore (and discard
    /// the template each time).</summary>
    internal static string? StoreRefusal(VmTemplateStore store)
    {
        var longest = Path.Combine(store.Directory, $"{VmTemplateStore.BuildPrefix}{int.MaxValue}-ffff", "agent.sock");
        return System.Text.Encoding.UTF8.GetByteCount(longest) > Qemu.QemuCommandLine.MaxSocketPathBytes
            ? $"the template directory {store.Directory} is too long for unix socket paths"
            : null;
    }

    /// <summary>The restored VM, or null (logged why) when the pod is to boot cold.</summary>
    private static async Task<QemuVm?> TryStartFromTemplateAsync(
        VmSpec spec, HostResolution host, VmTemplateOptions templates, VmHost vmHost, ILogger logger, CancellationToken ct)
    {
        if (TemplateRefusal(spec, host, vmHost) is { } refusal)
        {
            LogTemplateNotUsed(logger, spec.SandboxId, refusal);
            return null;
        }

        if (StoreRefusal(templates.Store) is { } storeRefusal)
        {
            LogTemplateNotUsed(logger, spec.SandboxId, storeRefusal);
            return null;
        }

        VmTemplateKey key;
        try
        {
            key = VmTemplateKey.For(spec.Config, host.Accelerator, host.Transport, spec.Nics.Count);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var why = $"cannot identify the template's files: {e.Message}";
            LogTemplateNotUsed(logger, spec.SandboxId, why);
            return null;
        }

        var template = templates.Store.Find(key);
        if (template is null && templates.Store.BuildFailure(key) is { } failure)
        {
            var why = $"the guest of template {key.Value} could not boot before ({failure})";
            LogTemplateNotUsed(logger, spec.SandboxId, why);
            return null;
        }

        if (template is null)
        {
            template = await TryBuildTemplateAsync(spec, host, templates, key, logger, ct);
            if (template is null)
            {
                return null;
            }
        }

        var vm = new QemuVm(spec.WithTemplate(new VmTemplateBoot(template.MemoryPath, template.StatePath, templates.Store.Directory)), host, null, logger, null);
        try
        {
            await vm.BootAsync(ct);
            vm.RestoredFrom = template;
            LogRestored(logger, spec.SandboxId, key.Value);
            return vm;
        }
        catch (HypervisorException e) when (!ct.IsCancellationRequested && !vm.Answered)
        {
            // QEMU stopped before its monitor answered: what is per pod (a tap it cannot open, a NIC or share the
            // host refuses) failed, not the template; the cold boot meets the same cause and reports it.
            LogRestoreRefused(logger, spec.SandboxId, key.Value, e.Message);
            return null;
        }
        catch (HypervisorException e) when (!ct.IsCancellationRequested)
        {
            vm.KeepConsoleAs("console.restore.log");
            LogRestoreFailed(logger, spec.SandboxId, key.Value, e.Message);
            templates.Store.Discard(template);
            return null;
        }
    }

    private static async Task<VmTemplate?> TryBuildTemplateAsync(
        VmSpec spec, HostResolution host, VmTemplateOptions templates, VmTemplateKey key, ILogger logger, CancellationToken ct)
    {
        VmTemplateBuild? build;
        try
        {
            build = templates.Store.TryBeginBuild(key, TemplateFamily(spec));
        }
        catch (HypervisorException e)
        {
            LogTemplateNotUsed(logger, spec.SandboxId, e.Message);
            return null;
        }

        if (build is null)
        {
            var why = $"template {key.Value} is being built by another pod";
            LogTemplateNotUsed(logger, spec.SandboxId, why);
            return null;
        }

        using (build)
        {
            // Another pod may have published it between our look and our lock.
            if (templates.Store.Find(key) is { } published)
            {
                return published;
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            LogTemplateBuilding(logger, spec.SandboxId, key.Value, templates.Store.Directory);
            var templateSpec = new VmSpec
            {
                SandboxId = "template-" + key.Value[..12],
                WorkDirectory = build.WorkDirectory,
                Config = spec.Config,
                SharedDirectory = spec.SharedDirectory is null ? null : Directory.CreateDirectory(build.ShareDirectory).FullName,
                ShareMountTag = spec.ShareMountTag,
                NetworkNamespace = spec.Nics.Count > 0 ? spec.NetworkNamespace : null,
                Nics = TemplateNics.ForTemplate(spec.Nics.Count),
                Template = new VmTemplateBoot(build.MemoryPath, null),
            };
            var vm = new QemuVm(templateSpec, host, null, logger, null);
            try
            {
                await vm.BootAsync(ct);
                // Bounded: a QEMU that never connects to the migration socket must not hold the pod forever.
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
                deadline.CancelAfter(TimeSpan.FromSeconds(spec.Config.BootTimeoutSeconds));
                await templates.WaitForGuestAsync(vm, deadline.Token);
                await vm.SaveStateAsync(build.StatePath, deadline.Token);
                await vm.StopAsync(DisposeGrace, ct);
                var template = build.Publish();
                var stateBytes = new FileInfo(template.StatePath).Length;
                LogTemplateBuilt(logger, spec.SandboxId, key.Value, clock.ElapsedMilliseconds, stateBytes);
                return template;
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                var why = $"building template {key.Value} failed: {e.Message}";
                LogTemplateNotUsed(logger, spec.SandboxId, why);
                if (vm.Exited.IsCompleted && !vm.stopRequested)
                {
                    // QEMU stopped by itself (a kernel panic, a broken initrd): no later pod's template would boot either.
                    templates.Store.RecordBuildFailure(key, vm.ExitReason ?? e.Message);
                }

                return null;
            }
            finally
            {
                await vm.DisposeAsync();
            }
        }
    }

    /// <summary>What a published template replaces (see <see cref="VmTemplateStore.RemoveOthersOf"/>): the older
    /// templates of its config file with as many NICs, not those of other NIC counts, which pods still use.</summary>
    internal static string? TemplateFamily(VmSpec spec) => VmTemplateStore.Family(spec.Config.SourcePath, spec.Nics.Count);

    /// <summary>The MAC each of the spec's NICs has in the guest now: the template's in a restored VM (the agent is
    /// to give it the pod's), the pod's own after a cold boot.</summary>
    public IReadOnlyList<string> GuestNicMacs => RestoredFrom is null
        ? [.. spec.Nics.Select(n => n.Mac)]
        : [.. TemplateNics.ForRestore(spec.Nics).Select(n => n.Mac)];

    /// <summary>Pauses the guest and writes its device state to <paramref name="statePath"/> (RAM stays in the shared
    /// memory file: x-ignore-shared). Over a unix socket the shim serves, since QEMU's seccomp filter forbids the
    /// exec: helper process and QEMU 7.2 has no file: URI.</summary>
    internal async Task SaveStateAsync(string statePath, CancellationToken ct)
    {
        await Qmp.ExecuteAsync(new Stop(), ct);
        await Qmp.ExecuteAsync(new MigrateSetCapability(MigrateSetCapability.IgnoreShared, true), ct);
        var socketPath = Path.Combine(spec.WorkDirectory, MigrationSocketName);
        File.Delete(socketPath);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(1);
        try
        {
            await Qmp.ExecuteAsync(new Migrate("unix:" + socketPath), ct);
            using var connection = await listener.AcceptAsync(ct);
            await using (var file = new FileStream(statePath, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            await using (var stream = new NetworkStream(connection, ownsSocket: false))
            {
                await stream.CopyToAsync(file, ct);
                file.Flush(flushToDisk: true);
            }

            await WaitForMigrationAsync("saving the template", ct);
        }
        finally
        {
            File.Delete(socketPath);
        }
    }

    /// <summary>Loads the template's device state into a QEMU started with -incoming defer and continues the guest.</summary>
    private async Task RestoreStateAsync(string statePath, CancellationToken ct)
    {
        var socketPath = spec.Template?.SocketDirectory is { } directory
            ? Path.Combine(directory, $".m-{Environment.ProcessId}-{Random.Shared.Next(0x10000):x4}.sock")
            : Path.Combine(spec.WorkDirectory, MigrationSocketName);
        File.Delete(socketPath);
        await using var state = new FileStream(statePath, FileMode.Open, FileAccess.Read, FileShare.Read);
        await Qmp.ExecuteAsync(new MigrateSetCapability(MigrateSetCapability.IgnoreShared, true), ct);
        await Qmp.ExecuteAsync(new MigrateIncoming("unix:" + socketPath), ct);
        try
        {
            // QEMU listens before migrate-incoming returns.
            using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                await using var stream = new NetworkStream(socket, ownsSocket: false);
                await state.CopyToAsync(stream, ct);
                socket.Shutdown(SocketShutdown.Send);
            }

            await WaitForMigrationAsync("restoring from the template", ct);
            await Qmp.ExecuteAsync(new Cont(), ct);
            RestoredAt = System.Diagnostics.Stopwatch.GetTimestamp();
        }
        finally
        {
            File.Delete(socketPath);
        }
    }

    private async Task WaitForMigrationAsync(string what, CancellationToken ct)
    {
        while (true)
        {
            var info = await Qmp.ExecuteAsync(new QueryMigrate(), ct);
            if (info.Completed)
            {
                return;
            }

            if (info.Ended)
            {
                throw new HypervisorException($"{what} failed: migration {info.Status}{(info.Error is null ? "" : ": " + info.Error)}");
            }

            await Task.Delay(MigrationPollInterval, ct);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: no VM template: {Reason}; booting cold")]
    private static partial void LogTemplateNotUsed(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: building VM template {Key} in {Directory}")]
    private static partial void LogTemplateBuilding(ILogger logger, string sandboxId, string key, string directory);

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: VM template {Key} built in {Ms} ms (device state {Bytes} bytes)")]
    private static partial void LogTemplateBuilt(ILogger logger, string sandboxId, string key, long ms, long bytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: restored from VM template {Key}")]
    private static partial void LogRestored(ILogger logger, string sandboxId, string key);

    [LoggerMessage(Level = LogLevel.Warning, Message = "vm {SandboxId}: QEMU restoring from VM template {Key} stopped before it answered: {Reason}; keeping the template and booting cold")]
    private static partial void LogRestoreRefused(ILogger logger, string sandboxId, string key, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "vm {SandboxId}: restoring from VM template {Key} failed: {Reason}; discarding the template and booting cold")]
    private static partial void LogRestoreFailed(ILogger logger, string sandboxId, string key, string reason);
}
