using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ShimV2.GuestAgent.Native;
using ShimV2.Transport;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Transport;

/// <summary>Where the host reaches the agent.</summary>
internal enum TransportKind
{
    None,
    VirtioSerial,
    Vsock,
}

/// <summary>
/// Serves the TTRPC server to the host: on the virtio-serial port <c>agent.0</c> when the VM has one (one
/// connection at a time; when the host disconnects, the port is reopened and served again), else on AF_VSOCK
/// port 1024.
/// </summary>
internal sealed partial class AgentTransport
{
    public const string PortName = "agent.0";
    public const uint VsockPort = 1024;

    /// <summary>How long to wait for the port's name when a virtio-serial device exists (the host names it late).</summary>
    private static readonly TimeSpan PortNameWait = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan HostPollInterval = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    private readonly ILogger _logger;
    private readonly string _sysClassPorts;
    private readonly string _sysVirtioDevices;
    private volatile TransportKind _active;

    public AgentTransport(ILogger logger, string sysClassPorts = "/sys/class/virtio-ports", string sysVirtioDevices = "/sys/bus/virtio/devices")
    {
        _logger = logger;
        _sysClassPorts = sysClassPorts;
        _sysVirtioDevices = sysVirtioDevices;
    }

    /// <summary>Raised after a host connection ended (the host closed it, or it broke).</summary>
    public event Action? ConnectionEnded;

    /// <summary>The transport being served now.</summary>
    public TransportKind Active => _active;

    /// <summary>Serves until <paramref name="stop"/> is cancelled.</summary>
    public async Task RunAsync(TtrpcServer server, CancellationToken stop)
    {
        var started = DateTime.UtcNow;
        while (!stop.IsCancellationRequested)
        {
            var port = FindPort(PortName);
            if (port != null)
            {
                await ServePortAsync(server, port, stop);
                continue;
            }

            if (HasVirtioSerialDevice() && DateTime.UtcNow - started < PortNameWait)
            {
                await Delay(TimeSpan.FromMilliseconds(20), stop);
                continue;
            }

            try
            {
                await ServeVsockAsync(server, stop);
            }
            catch (SocketException e)
            {
                LogNoTransport(_logger, e.Message);
                await Delay(RetryDelay, stop);
            }
        }
    }

    /// <summary>The device node of the virtio-serial port with that name, or null.</summary>
    public string? FindPort(string name)
    {
        var link = $"/dev/virtio-ports/{name}";
        if (File.Exists(link))
        {
            return link;
        }

        if (!Directory.Exists(_sysClassPorts))
        {
            return null;
        }

        foreach (var dir in Directory.EnumerateDirectories(_sysClassPorts))
        {
            try
            {
                var nameFile = Path.Combine(dir, "name");
                if (File.Exists(nameFile) && File.ReadAllText(nameFile).Trim() == name)
                {
                    var node = "/dev/" + Path.GetFileName(dir);
                    return File.Exists(node) ? node : null;
                }
            }
            catch (IOException)
            {
                // The port went away while we looked.
            }
        }

        return null;
    }

    private bool HasVirtioSerialDevice()
    {
        if (!Directory.Exists(_sysVirtioDevices))
        {
            return false;
        }

        foreach (var dir in Directory.EnumerateDirectories(_sysVirtioDevices))
        {
            try
            {
                // Device id 3: virtio console (virtio-serial).
                if (File.ReadAllText(Path.Combine(dir, "device")).Trim() == "0x0003")
                {
                    return true;
                }
            }
            catch (IOException)
            {
            }
        }

        return false;
    }

    /// <summary>
    /// Serves the port until it fails. The port stays open across host connections: closing it would make the
    /// guest discard what the host sends while QEMU has not yet seen the close (a reconnecting host's first
    /// request would be lost).
    /// </summary>
    private async Task ServePortAsync(TtrpcServer server, string path, CancellationToken stop)
    {
        // Non-blocking: FdStream reads whatever the port holds without a thread hop (see there).
        var fd = Libc.open(path, Libc.O_RDWR | Libc.O_CLOEXEC | Libc.O_NOCTTY | Libc.O_NONBLOCK, 0);
        if (fd < 0)
        {
            var errno = Libc.Errno;
            LogPortOpenFailed(_logger, path, Libc.StrError(errno));
            await Delay(errno == Libc.EBUSY ? HostPollInterval : RetryDelay, stop);
            return;
        }

        using var handle = new SafeFd(fd);
        LogServing(_logger, "virtio-serial", path);
        var frames = new FrameSplitter();
        while (!stop.IsCancellationRequested)
        {
            // Until the host opens its side, the port reads as end of stream (poll says POLLHUP): wait for it.
            // A client that replaced the last one without the guest seeing a hang-up has already sent its first bytes.
            if (!frames.NewClient && !await WaitForHostAsync(handle, stop))
            {
                return;
            }

            _active = TransportKind.VirtioSerial;
            var uptime = Uptime();
            LogHostConnected(_logger, "virtio-serial", uptime);
            var current = frames.NewClient ? new FrameSplitter(frames.CarryOver) : new FrameSplitter();
            frames = current;
            await server.ServeConnectionAsync(new FdStream(handle, ownsFd: false, current), stop);
            LogConnectionEnded(_logger, current.NewClient ? "virtio-serial (a new client took over)" : "virtio-serial");
            ConnectionEnded?.Invoke();
        }
    }

    private static async Task<bool> WaitForHostAsync(SafeFd handle, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            short revents = 0;
            handle.TryUse(fd => revents = PollOnce(fd));
            if ((revents & Libc.POLLHUP) == 0 && (revents & (Libc.POLLIN | Libc.POLLOUT)) != 0)
            {
                return true;
            }

            if ((revents & (Libc.POLLERR | Libc.POLLNVAL)) != 0)
            {
                return false;
            }

            await Delay(HostPollInterval, stop);
        }

        return false;
    }

    private static unsafe short PollOnce(int fd)
    {
        var pfd = new Libc.PollFd { Fd = fd, Events = Libc.POLLIN | Libc.POLLOUT };
        var rc = Libc.poll(&pfd, 1, 0);
        return rc > 0 ? pfd.Revents : (short)0;
    }

    private async Task ServeVsockAsync(TtrpcServer server, CancellationToken stop)
    {
        using var listener = VsockEndPoint.CreateSocket();
        listener.Bind(new VsockEndPoint(VsockEndPoint.AnyCid, VsockPort));
        listener.Listen(16);
        _active = TransportKind.Vsock;
        LogServing(_logger, "vsock", $"port {VsockPort}");
        EventHandler closed = (_, _) => ConnectionEnded?.Invoke();
        server.ConnectionClosed += closed;
        try
        {
            await server.ServeAsync(listener, AdmitHost, stop);
        }
        finally
        {
            server.ConnectionClosed -= closed;
        }
    }

    /// <summary>vsock is not namespaced: a container process could reach the agent's port through vsock_loopback
    /// (CID 1) or the guest's own CID. Only the host (CID 2) may talk to the agent.</summary>
    internal static bool IsHost(EndPoint? peer) => peer is VsockEndPoint { Cid: VsockEndPoint.HostCid };

    private bool AdmitHost(Socket socket)
    {
        EndPoint? peer = null;
        try
        {
            peer = socket.RemoteEndPoint;
        }
        catch (SocketException)
        {
            // Gone already: refused below.
        }

        if (IsHost(peer))
        {
            return true;
        }

        LogRefusedPeer(_logger, peer?.ToString() ?? "an unknown peer");
        return false;
    }

    internal static string Uptime()
    {
        var text = KernelFiles.TryRead("/proc/uptime") ?? "";
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        return space > 0 ? text[..space] : text.Trim();
    }

    private static async Task Delay(TimeSpan delay, CancellationToken stop)
    {
        try
        {
            await Task.Delay(delay, stop);
        }
        catch (OperationCanceledException)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "serving the agent on {Transport} ({Where})")]
    private static partial void LogServing(ILogger logger, string transport, string where);

    [LoggerMessage(Level = LogLevel.Information, Message = "host connected on {Transport} (uptime {Uptime} s)")]
    private static partial void LogHostConnected(ILogger logger, string transport, string uptime);

    [LoggerMessage(Level = LogLevel.Information, Message = "host connection on {Transport} ended")]
    private static partial void LogConnectionEnded(ILogger logger, string transport);

    [LoggerMessage(Level = LogLevel.Warning, Message = "refused an agent connection from {Peer}: only the host may connect")]
    private static partial void LogRefusedPeer(ILogger logger, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cannot open {Path}: {Reason}")]
    private static partial void LogPortOpenFailed(ILogger logger, string path, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "no transport to the host: no virtio-serial port agent.0, and vsock failed: {Reason}")]
    private static partial void LogNoTransport(ILogger logger, string reason);
}
