using System.Net.Sockets;

namespace ShimV2.Shim.PortForward;

/// <summary>
/// Pumps one accepted connection to its guest connection and back. Each direction ends on its own: end of stream on
/// one side becomes a half-close on the other (HTTP clients that shut down their sending side keep getting the
/// answer). A failure in either direction (a reset, a lost agent, the pod stopping) ends both: the local connection
/// is reset so the client sees an error rather than a clean end, and the guest connection is closed.
/// </summary>
public static class ConnectionRelay
{
    /// <summary>Bytes per host-to-guest write: several round trips' worth of a busy socket, well inside a frame.</summary>
    public const int UpChunk = 256 * 1024;

    /// <summary>How long closing the guest connection may take at the end: the agent answers it at once.</summary>
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Relays until both directions ended; never throws. Owns <paramref name="local"/>.</summary>
    /// <returns>Null when both directions ended cleanly, else what broke the connection.</returns>
    public static async Task<Exception?> RunAsync(Socket local, IGuestConnection guest, CancellationToken stop)
    {
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(stop);
        Exception? failure = null;
        async Task Guard(Func<CancellationToken, Task> pump)
        {
            try
            {
                await pump(failed.Token);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
                await failed.CancelAsync();
            }
        }

        await Task.WhenAll(
            Guard(ct => UpAsync(local, guest, ct)),
            Guard(ct => DownAsync(local, guest, ct)));

        if (failure is not null)
        {
            // RST, not FIN: the client must not take a cut-off stream for a complete one.
            try
            {
                local.LingerState = new LingerOption(true, 0);
            }
            catch (SocketException)
            {
            }
        }

        local.Dispose();
        try
        {
            using var timeout = new CancellationTokenSource(CloseTimeout);
            await guest.CloseAsync(timeout.Token);
        }
        catch (Exception e) when (failure is not null || stop.IsCancellationRequested)
        {
            // The guest connection goes with the agent connection anyway.
            _ = e;
        }
        catch (Exception e)
        {
            failure = e;
        }

        return failure;
    }

    /// <summary>
    /// Local to guest: one write in flight while the next chunk is received, so the order holds and a guest that
    /// stops reading stops this copy with two chunks held here (the client then fills its socket buffer).
    /// </summary>
    private static async Task UpAsync(Socket local, IGuestConnection guest, CancellationToken ct)
    {
        byte[][] buffers = [new byte[UpChunk], new byte[UpChunk]];
        var current = 0;
        var inFlight = Task.CompletedTask;
        try
        {
            while (true)
            {
                var n = await local.ReceiveAsync(buffers[current], SocketFlags.None, ct);
                await inFlight;
                if (n == 0)
                {
                    await guest.CloseWriteAsync(ct);
                    return;
                }

                inFlight = guest.WriteAsync(buffers[current].AsMemory(0, n), ct);
                current ^= 1;
            }
        }
        finally
        {
            Observe(inFlight);
        }
    }

    /// <summary>Guest to local: the next read is asked for (after the last one answered) while this one is sent.</summary>
    private static async Task DownAsync(Socket local, IGuestConnection guest, CancellationToken ct)
    {
        var next = guest.ReadAsync(ct);
        try
        {
            while (true)
            {
                var data = await next;
                if (data.IsEmpty)
                {
                    local.Shutdown(SocketShutdown.Send);
                    return;
                }

                next = guest.ReadAsync(ct);
                while (!data.IsEmpty)
                {
                    var sent = await local.SendAsync(data, SocketFlags.None, ct);
                    data = data[sent..];
                }
            }
        }
        finally
        {
            Observe(next);
        }
    }

    /// <summary>A call left behind when its loop stopped is not waited for, only observed.</summary>
    private static void Observe(Task task) =>
        _ = task.ContinueWith(static t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
}
