using System.Globalization;
using ShimV2.GuestAgent.Native;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Hotplug;

/// <summary>
/// Brings hot-plugged vCPUs and memory blocks online (the guest has no udev rules doing it). A hot-plugged CPU's
/// sysfs node can appear a little after the host's device_add returns, so CPUs are retried until the requested
/// number came online or the deadline passed.
/// </summary>
internal sealed class CpuMemOnliner(string sysRoot = "/sys/devices/system", TimeSpan? cpuDeadline = null)
{
    private static readonly TimeSpan CpuRetry = TimeSpan.FromMilliseconds(50);
    private readonly TimeSpan _cpuDeadline = cpuDeadline ?? TimeSpan.FromSeconds(5);

    /// <summary>
    /// Makes the kernel online hot-plugged memory blocks as they arrive (memory added after OnlineCpuMem would
    /// otherwise stay offline). False when the kernel has no such switch or refused.
    /// </summary>
    public bool EnableMemoryAutoOnline()
    {
        var path = Path.Combine(sysRoot, "memory", "auto_online_blocks");
        if (!File.Exists(path))
        {
            return false;
        }

        try
        {
            if (KernelFiles.TryRead(path)?.Trim() == "offline")
            {
                KernelFiles.Write(path, "online");
            }

            return true;
        }
        catch (NativeIOException)
        {
            return false;
        }
    }

    /// <summary>Onlines up to <paramref name="cpus"/> offline CPUs (0: all of them) and, unless cpuOnly, every offline memory block.</summary>
    /// <returns>How many CPUs and memory blocks were brought online.</returns>
    public async Task<(int Cpus, int MemoryBlocks)> OnlineAsync(uint cpus, bool cpuOnly, CancellationToken ct)
    {
        var onlined = 0;
        var deadline = DateTime.UtcNow + _cpuDeadline;
        while (true)
        {
            onlined += OnlineOffline(Path.Combine(sysRoot, "cpu"), "cpu", "online", "0", "1", cpus == 0 ? int.MaxValue : (int)cpus - onlined);
            if (cpus == 0 || onlined >= cpus || DateTime.UtcNow >= deadline)
            {
                break;
            }

            await Task.Delay(CpuRetry, ct);
        }

        if (cpus != 0 && onlined < cpus)
        {
            throw new AgentException(TtrpcStatusCode.DeadlineExceeded, $"only {onlined} of {cpus} hot-plugged CPUs came online");
        }

        var blocks = cpuOnly ? 0 : OnlineOffline(Path.Combine(sysRoot, "memory"), "memory", "state", "offline", "online", int.MaxValue);
        return (onlined, blocks);
    }

    private static int OnlineOffline(string dir, string prefix, string file, string offline, string online, int max)
    {
        if (!Directory.Exists(dir) || max <= 0)
        {
            return 0;
        }

        var count = 0;
        var nodes = Directory.EnumerateDirectories(dir, prefix + "*")
            .Select(d => (Dir: d, Index: int.TryParse(Path.GetFileName(d).AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : -1))
            .Where(n => n.Index >= 0)
            .OrderBy(n => n.Index);
        foreach (var (node, _) in nodes)
        {
            var path = Path.Combine(node, file);
            if (KernelFiles.TryRead(path)?.Trim() != offline)
            {
                continue;
            }

            try
            {
                KernelFiles.Write(path, online);
                count++;
            }
            catch (NativeIOException)
            {
                // Still being added, or not removable/onlinable: the retry (CPUs) or the next call takes it.
            }

            if (count >= max)
            {
                break;
            }
        }

        return count;
    }
}
