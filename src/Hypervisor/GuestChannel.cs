namespace ShimV2.Hypervisor;

/// <summary>How the host reaches the guest's channel (the agent listens on the guest side).</summary>
public enum AgentTransportKind
{
    /// <summary>AF_VSOCK through <c>vhost-vsock-pci</c>; the host dials (cid, <see cref="GuestChannel.VsockPort"/>).</summary>
    Vsock,

    /// <summary>A virtio-serial port named <see cref="GuestChannel.VirtioSerialPortName"/>; the host dials a unix socket.</summary>
    VirtioSerial,
}

/// <summary>Names both sides agree on. The guest sees the port as <c>/dev/virtio-ports/agent.0</c>
/// (a udev symlink; without udev, find the <c>vportNpM</c> whose <c>/sys/class/virtio-ports/*/name</c> is agent.0).</summary>
public static class GuestChannel
{
    public const string VirtioSerialPortName = "agent.0";

    public const uint VsockPort = 1024;

    /// <summary>The guest's /init starts every console line with this, from its first line on (the kernel runs
    /// with <c>quiet</c>): the sign of life that tells a guest that runs from one stuck in the firmware.</summary>
    public const string InitConsoleMarker = "csharp-init: ";
}
