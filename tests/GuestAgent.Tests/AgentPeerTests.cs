using System.Net;
using ShimV2.GuestAgent.Transport;
using ShimV2.Transport;

namespace ShimV2.GuestAgent.Tests;

/// <summary>Who may talk to the agent over vsock: vsock has no namespaces, so a container could dial the agent's
/// port through vsock_loopback (CID 1) or the guest's own CID; only the host (CID 2) is served.</summary>
public class AgentPeerTests
{
    public static TheoryData<EndPoint?, bool> Peers => new()
    {
        { new VsockEndPoint(VsockEndPoint.HostCid, 50000), true },
        { new VsockEndPoint(VsockEndPoint.LocalCid, 50000), false },
        { new VsockEndPoint(3, 50000), false },
        { new VsockEndPoint(VsockEndPoint.AnyCid, 50000), false },
        { new IPEndPoint(IPAddress.Loopback, 1024), false },
        { null, false },
    };

    [Theory]
    [MemberData(nameof(Peers))]
    public void Only_the_host_is_admitted(EndPoint? peer, bool admitted) => Assert.Equal(admitted, AgentTransport.IsHost(peer));
}
