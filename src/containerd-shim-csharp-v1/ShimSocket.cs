using System.Net.Sockets;
using System.Text;
using ShimV2.Ttrpc;

namespace ShimV2.Cli;

/// <summary>The shim's listening socket, named as runc's shim names it so one pod shares one shim.</summary>
internal static class ShimSocket
{
    public const string SocketDirectory = "/run/containerd/s";

    /// <summary>/run/containerd/s/&lt;sha256(path.Join(address, ns, group))&gt;.</summary>
    public static string PathFor(string containerdAddress, string ns, string groupId)
    {
        var joined = JoinClean(ShimFlags.StripUnix(containerdAddress), ns, groupId);
        var hash = Convert.ToHexStringLower(ShimV2.Hypervisor.Sha256.HashData(Encoding.UTF8.GetBytes(joined)));
        return Path.Combine(Environment.GetEnvironmentVariable("CSHARP_SHIM_SOCKET_DIR") ?? SocketDirectory, hash);
    }

    public static string Address(string path) => "unix://" + path;

    /// <summary>Whether a live shim already serves this socket.</summary>
    public static bool Accepts(string path)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        try
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// Whether a live shim serves this socket: it answers a Connect within <paramref name="timeout"/>. Stronger than
    /// <see cref="Accepts"/>: a listening socket a dead shim's child still holds accepts connections nobody serves.
    /// </summary>
    public static bool Answers(string path, TimeSpan timeout)
    {
        if (!Accepts(path))
        {
            return false;
        }

        return AnswersAsync(path, timeout).GetAwaiter().GetResult();
    }

    private static async Task<bool> AnswersAsync(string path, TimeSpan timeout)
    {
        try
        {
            using var connect = new CancellationTokenSource(timeout);
            await using var client = await TtrpcClient.ConnectUnixAsync(path, connect.Token);
            await client.CallAsync<Containerd.Task.V2.ConnectRequest, Containerd.Task.V2.ConnectResponse>(
                "containerd.task.v2.Task", "Connect", new Containerd.Task.V2.ConnectRequest(), new TtrpcCallOptions { Timeout = timeout });
            return true;
        }
        catch (TtrpcException e) when (e.Code is not (TtrpcStatusCode.DeadlineExceeded or TtrpcStatusCode.Unavailable))
        {
            // It answered, if only with an error: somebody serves it.
            return true;
        }
        catch (Exception e) when (e is TtrpcException or OperationCanceledException or IOException or SocketException)
        {
            return false;
        }
    }

    /// <summary>Binds and listens (mode 0600), replacing a stale socket file.</summary>
    public static Socket Listen(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (File.Exists(path))
        {
            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(128);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Go's path.Join: joins with '/' and cleans the result.</summary>
    internal static string JoinClean(params string[] parts)
    {
        var absolute = parts.Length > 0 && parts[0].StartsWith('/');
        var stack = new List<string>();
        foreach (var segment in string.Join('/', parts).Split('/'))
        {
            if (segment.Length == 0 || segment == ".")
            {
                continue;
            }

            if (segment == "..")
            {
                if (stack.Count > 0 && stack[^1] != "..")
                {
                    stack.RemoveAt(stack.Count - 1);
                }
                else if (!absolute)
                {
                    stack.Add(segment);
                }

                continue;
            }

            stack.Add(segment);
        }

        var joined = string.Join('/', stack);
        return absolute ? "/" + joined : joined.Length == 0 ? "." : joined;
    }
}
