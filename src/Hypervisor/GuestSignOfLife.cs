using System.Text;

namespace ShimV2.Hypervisor;

internal enum GuestLife
{
    /// <summary>The guest's init wrote its first console line.</summary>
    Seen,

    /// <summary>QEMU exited first.</summary>
    Exited,

    /// <summary>Nothing within the time given.</summary>
    Silent,
}

/// <summary>Watches a VM's console file for <see cref="GuestChannel.InitConsoleMarker"/>.</summary>
internal static class GuestSignOfLife
{
    /// <summary>QEMU writes the console to a plain file, which gives no notification: poll it.</summary>
    internal static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(25);

    public static async Task<GuestLife> WaitAsync(string consoleLog, Task exited, TimeSpan limit, CancellationToken ct)
    {
        var marker = Encoding.ASCII.GetBytes(GuestChannel.InitConsoleMarker);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(limit);
        using var timer = new PeriodicTimer(PollInterval);
        var scanner = new MarkerScanner(consoleLog, marker);
        while (true)
        {
            if (scanner.Found())
            {
                return GuestLife.Seen;
            }

            if (exited.IsCompleted)
            {
                return scanner.Found() ? GuestLife.Seen : GuestLife.Exited;
            }

            try
            {
                await Task.WhenAny(timer.WaitForNextTickAsync(deadline.Token).AsTask(), exited).WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return scanner.Found() ? GuestLife.Seen : GuestLife.Silent;
            }
        }
    }

    /// <summary>Reads what was appended since the last call and looks for the marker, also across reads.</summary>
    private sealed class MarkerScanner(string path, byte[] marker)
    {
        private readonly byte[] buffer = new byte[16384];
        private long offset;
        private byte[] carry = [];

        public bool Found()
        {
            try
            {
                using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                if (file.Length < offset)
                {
                    offset = 0;
                    carry = [];
                }

                file.Position = offset;
                int n;
                while ((n = file.Read(buffer)) > 0)
                {
                    offset += n;
                    var window = new byte[carry.Length + n];
                    carry.CopyTo(window, 0);
                    buffer.AsSpan(0, n).CopyTo(window.AsSpan(carry.Length));
                    if (window.AsSpan().IndexOf(marker) >= 0)
                    {
                        return true;
                    }

                    carry = window[Math.Max(0, window.Length - (marker.Length - 1))..];
                }
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                // QEMU has not created it yet.
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Unreadable now; try again on the next tick.
            }

            return false;
        }
    }
}
