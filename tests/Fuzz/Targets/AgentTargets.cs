using Google.Protobuf;
using ShimV2.Agent.Protocol.V1;
using ShimV2.GuestAgent;
using ShimV2.GuestAgent.Helper;
using ShimV2.GuestAgent.Oci;
using ShimV2.GuestAgent.Service;
using ShimV2.GuestAgent.Stdio;
using ShimV2.Ttrpc;

namespace ShimV2.Fuzz;

/// <summary>
/// The agent's request handlers up to the point where they would touch the guest: decode the request, validate
/// it, and plan the helper's instructions (mounts, namespaces, seccomp, user, rlimits, ...). Nothing is spawned or
/// mounted. The first input byte picks the request; the rest is its protobuf payload.
/// </summary>
internal static class AgentTargets
{
    private static readonly PlannerContext Context = new() { Cgroup2 = true, SharePath = "/run/shimv2-fuzz/shared" };

    public static void Requests(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        var payload = data[1..].ToArray();
        try
        {
            switch (data[0] % 5)
            {
                case 0:
                    var create = CreateContainerRequest.Parser.ParseFrom(payload);
                    var (_, spec, rootfs, _) = AgentService.DecodeCreate(create);
                    ContainerPlanner.PlanCreate(spec, rootfs, create.Terminal, create.Terminal ? "/dev/pts/0" : null, Context).Instructions.Encode();
                    break;
                case 1:
                    var exec = ExecProcessRequest.Parser.ParseFrom(payload);
                    var (_, process) = AgentService.DecodeExec(exec);
                    ContainerPlanner.PlanExec(1, uint.MaxValue, process, exec.Terminal).Instructions.Encode();
                    break;
                case 2:
                    AgentService.DecodeUpdate(UpdateContainerRequest.Parser.ParseFrom(payload));
                    break;
                case 3:
                    WriteStreamParser.Parse(payload);
                    break;
                default:
                    var sandbox = CreateSandboxRequest.Parser.ParseFrom(payload);
                    MountOptionParser.Parse([.. sandbox.ShareOptions]);
                    break;
            }
        }
        catch (Exception e) when (e is AgentException or InvalidProtocolBufferException or TtrpcException)
        {
            // Refused with a status the shim gets back: InvalidArgument, FailedPrecondition, ...
        }
    }
}
