using System.Globalization;

namespace ShimV2.GuestAgent.PortForward;

/// <summary>A TCP port the guest listens on, and which loopback address reaches it.</summary>
internal readonly record struct LoopbackListener(int Port, bool Ipv4, bool Ipv6);

/// <summary>
/// Reads the listening sockets of the guest's network namespace from /proc/net/tcp and /proc/net/tcp6, keeping those
/// a connection to loopback reaches: what containerd's dial of localhost:PORT reaches under runc. A socket bound to
/// the pod IP only is not reached on loopback under runc either, so it is left out.
/// </summary>
internal static class ProcNetTcp
{
    /// <summary>TCP_LISTEN in the kernel's st column.</summary>
    private const string ListenState = "0A";

    /// <summary>One entry per port, sorted by port, merging what /proc/net/tcp and tcp6 say.</summary>
    public static IReadOnlyList<LoopbackListener> Parse(string? tcp4, string? tcp6)
    {
        var ports = new SortedDictionary<int, LoopbackListener>();
        void Add(int port, bool v4, bool v6)
        {
            var old = ports.GetValueOrDefault(port, new LoopbackListener(port, false, false));
            ports[port] = old with { Ipv4 = old.Ipv4 || v4, Ipv6 = old.Ipv6 || v6 };
        }

        foreach (var (address, port) in Listening(tcp4))
        {
            // Host byte order (little-endian here): 0100007F is 127.0.0.1.
            if (address is "00000000" or "0100007F")
            {
                Add(port, true, false);
            }
        }

        foreach (var (address, port) in Listening(tcp6))
        {
            switch (address)
            {
                case "00000000000000000000000000000000":
                    // A wildcard IPv6 socket takes IPv4 too unless IPV6_V6ONLY (off by default): both reach it.
                    Add(port, true, true);
                    break;
                case "00000000000000000000000001000000":
                    Add(port, false, true);
                    break;
                case "0000000000000000FFFF00000100007F":
                    Add(port, true, false);
                    break;
            }
        }

        return [.. ports.Values];
    }

    /// <summary>(local address hex, port) of each LISTEN line; malformed lines are skipped.</summary>
    private static IEnumerable<(string Address, int Port)> Listening(string? table)
    {
        if (string.IsNullOrEmpty(table))
        {
            yield break;
        }

        // The first line is the header.
        foreach (var line in table.Split('\n').Skip(1))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 4 || fields[3] != ListenState)
            {
                continue;
            }

            var local = fields[1];
            var colon = local.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || !int.TryParse(local.AsSpan(colon + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var port)
                || port is <= 0 or > 65535)
            {
                continue;
            }

            yield return (local[..colon].ToUpperInvariant(), port);
        }
    }
}
