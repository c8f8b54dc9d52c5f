using Microsoft.Extensions.Logging;

namespace ShimV2.Hypervisor;

/// <summary>vCPUs after <see cref="QemuVm.HotplugVcpusAsync"/>: the device ids added and the vCPUs QEMU now has.
/// The guest still has to online new CPUs (echo 1 &gt; /sys/devices/system/cpu/cpuN/online).</summary>
public sealed record VcpuHotplugResult(IReadOnlyList<string> AddedDeviceIds, int Vcpus);

/// <summary>Memory after <see cref="QemuVm.HotplugMemoryAsync"/>: the DIMM added, its size (the request rounded up to
/// <see cref="QemuVm.MemoryHotplugAlignmentMiB"/>) and the VM's memory now. The kernel onlines it itself
/// (memhp_default_state=online is on the kernel command line when memory hotplug is configured).</summary>
public sealed record MemoryHotplugResult(string DimmId, int AddedMiB, int TotalMiB);

public sealed partial class QemuVm
{
    /// <summary>Hot-plugged memory is added in multiples of this (the x86-64 Linux memory block size).</summary>
    public const int MemoryHotplugAlignmentMiB = 128;

    private const long MiB = 1024 * 1024;

    private const string PanicMarker = "Kernel panic - not syncing";

    private readonly SemaphoreSlim hotplugLock = new(1, 1);
    private int hotplugSerial;

    /// <summary>Adds <paramref name="count"/> vCPUs into free slots (the config's maxVCpus bounds them).</summary>
    /// <exception cref="HypervisorException">Not running/paused, not enough free slots, or QEMU refused (message says which).</exception>
    public async Task<VcpuHotplugResult> HotplugVcpusAsync(int count, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        await hotplugLock.WaitAsync(ct);
        try
        {
            RequireRunningOrPaused($"add {count} vCPU(s) to");
            var slots = await Qmp.ExecuteAsync(new QueryHotpluggableCpus(), ct);
            var free = slots
                .Where(s => s.QomPath is null)
                .OrderBy(s => s.Props.NodeId ?? 0)
                .ThenBy(s => s.Props.SocketId ?? 0)
                .ThenBy(s => s.Props.DieId ?? 0)
                .ThenBy(s => s.Props.ClusterId ?? 0)
                .ThenBy(s => s.Props.CoreId ?? 0)
                .ThenBy(s => s.Props.ThreadId ?? 0)
                .ToList();
            var perSlot = free.Count == 0 ? 1 : Math.Max(1, free[0].VcpusCount);
            var wanted = (count + perSlot - 1) / perSlot;
            if (free.Count < wanted)
            {
                throw new HypervisorException(
                    $"cannot add {count} vCPU(s) to vm {SandboxId}: {free.Count * perSlot} of maxVCpus {spec.Config.EffectiveMaxVCpus} left");
            }

            var added = new List<string>();
            foreach (var slot in free.Take(wanted))
            {
                var id = $"vcpu{Interlocked.Increment(ref hotplugSerial)}";
                await Qmp.ExecuteAsync(new CpuDeviceAdd(slot.Type, id, slot.Props), ct);
                added.Add(id);
            }

            var cpus = await Qmp.ExecuteAsync(new QueryCpusFast(), ct);
            LogVcpusAdded(logger, SandboxId, added.Count, cpus.Count);
            return new VcpuHotplugResult(added, cpus.Count);
        }
        finally
        {
            hotplugLock.Release();
        }
    }

    /// <summary>Adds a DIMM of <paramref name="mib"/> MiB, rounded up to <see cref="MemoryHotplugAlignmentMiB"/>
    /// (the config's maxMemoryMiB and memorySlots bound it).</summary>
    /// <exception cref="HypervisorException">Not running/paused, not enough room or slots, or QEMU refused.</exception>
    public async Task<MemoryHotplugResult> HotplugMemoryAsync(int mib, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(mib);
        var size = (int)Math.Min(int.MaxValue, ((long)mib + MemoryHotplugAlignmentMiB - 1) / MemoryHotplugAlignmentMiB * MemoryHotplugAlignmentMiB);
        var config = spec.Config;
        await hotplugLock.WaitAsync(ct);
        try
        {
            RequireRunningOrPaused($"add {mib} MiB of memory to");
            if (config.EffectiveMaxMemoryMiB <= config.MemoryMiB)
            {
                throw new HypervisorException(
                    $"cannot add memory to vm {SandboxId}: memory hotplug is off (maxMemoryMiB {config.EffectiveMaxMemoryMiB} is not above memoryMiB {config.MemoryMiB})");
            }

            var devices = await Qmp.ExecuteAsync(new QueryMemoryDevices(), ct);
            var pluggedMiB = (int)(devices.Sum(d => d.Data?.Size ?? 0) / MiB);
            var left = config.EffectiveMaxMemoryMiB - config.MemoryMiB - pluggedMiB;
            if (size > left)
            {
                throw new HypervisorException(
                    $"cannot add {size} MiB to vm {SandboxId}: {left} MiB of maxMemoryMiB {config.EffectiveMaxMemoryMiB} left");
            }

            if (devices.Count >= config.MemorySlots)
            {
                throw new HypervisorException(
                    $"cannot add memory to vm {SandboxId}: all {config.MemorySlots} memorySlots are in use");
            }

            var serial = Interlocked.Increment(ref hotplugSerial);
            var backend = $"mem{serial}";
            var dimm = $"dimm{serial}";
            if (UsesVirtioFs)
            {
                await Qmp.ExecuteAsync(new MemoryBackendMemfdAdd(backend, size * MiB), ct);
            }
            else
            {
                await Qmp.ExecuteAsync(new MemoryBackendRamAdd(backend, size * MiB), ct);
            }

            try
            {
                await Qmp.ExecuteAsync(new PcDimmAdd(dimm, backend), ct);
            }
            catch (QmpException)
            {
                await RemoveBackendQuietlyAsync(backend);
                throw;
            }

            var total = config.MemoryMiB + pluggedMiB + size;
            LogMemoryAdded(logger, SandboxId, size, total);
            return new MemoryHotplugResult(dimm, size, total);
        }
        finally
        {
            hotplugLock.Release();
        }
    }

    /// <summary>The last non-empty lines of the guest console (console.log), joined with " / ", led by the kernel's
    /// "Kernel panic - not syncing: ..." line when one scrolled out of them; null when there are none.</summary>
    public string? ConsoleTail(int maxLines = 3)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLines);
        const int TailBytes = 8192;
        try
        {
            using var file = new FileStream(ConsoleLogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var start = Math.Max(0, file.Length - TailBytes);
            file.Position = start;
            var buffer = new byte[file.Length - start];
            file.ReadExactly(buffer);
            var text = System.Text.Encoding.UTF8.GetString(buffer);
            var all = text.Split('\n')
                .Skip(start > 0 ? 1 : 0)
                .Select(l => new string(TerminalEscape().Replace(l, "").Where(c => !char.IsControl(c)).ToArray()).Trim())
                .Where(l => l.Length > 0)
                .ToList();
            var lines = all.TakeLast(maxLines).ToList();

            // A panic's reason is followed by a stack dump; keep the reason, it is what explains the death.
            var panic = all.FindLastIndex(l => l.Contains(PanicMarker, StringComparison.Ordinal) && !l.Contains("---[ end", StringComparison.Ordinal));
            if (panic >= 0 && panic < all.Count - lines.Count)
            {
                lines.Insert(0, all[panic] + " ...");
            }

            return lines.Count == 0 ? null : string.Join(" / ", lines);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>VT100 sequences the firmware writes to the serial console (clear screen, reset, ...).</summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"\x1B(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_a-z])")]
    private static partial System.Text.RegularExpressions.Regex TerminalEscape();

    private async Task RemoveBackendQuietlyAsync(string backend)
    {
        try
        {
            await Qmp.ExecuteAsync(new ObjectDel(backend), CancellationToken.None);
        }
        catch (HypervisorException e)
        {
            LogBackendLeft(logger, SandboxId, backend, e.Message);
        }
    }

    private void RequireRunningOrPaused(string action)
    {
        lock (gate)
        {
            if (VmStateMachine.Decide(state, VmAction.Hotplug) == VmActionVerdict.Invalid)
            {
                throw new InvalidVmStateException(SandboxId, VmAction.Hotplug, state, action);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: added {Added} vCPU(s); qemu now has {Vcpus}")]
    private static partial void LogVcpusAdded(ILogger logger, string sandboxId, int added, int vcpus);

    [LoggerMessage(Level = LogLevel.Information, Message = "vm {SandboxId}: added a {SizeMiB} MiB DIMM; memory now {TotalMiB} MiB")]
    private static partial void LogMemoryAdded(ILogger logger, string sandboxId, int sizeMiB, int totalMiB);

    [LoggerMessage(Level = LogLevel.Warning, Message = "vm {SandboxId}: memory backend {Backend} left behind: {Reason}")]
    private static partial void LogBackendLeft(ILogger logger, string sandboxId, string backend, string reason);
}
