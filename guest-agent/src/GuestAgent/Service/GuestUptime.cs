using System.Globalization;

namespace ShimV2.GuestAgent.Service;

/// <summary>The guest's uptime as /proc/uptime gives it: CLOCK_BOOTTIME, which starts with the kernel's
/// timekeeping, so the host can date the kernel's start on its own clock.</summary>
internal static class GuestUptime
{
    /// <summary>The first field of /proc/uptime ("12.34 5.67") in ms; 0 when missing or unreadable.</summary>
    public static ulong Milliseconds(string? procUptime)
    {
        var first = procUptime?.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
        return first is not null && decimal.TryParse(first, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0
            ? (ulong)(seconds * 1000)
            : 0;
    }
}
