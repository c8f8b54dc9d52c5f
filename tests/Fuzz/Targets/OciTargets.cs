using System.Text;
using ShimV2.GuestAgent;
using ShimV2.GuestAgent.Cgroups;
using ShimV2.GuestAgent.Oci;
using ShimV2.Shim.Bundle;

namespace ShimV2.Fuzz;

/// <summary>
/// A bundle's config.json as the shim reads it (<see cref="BundleSpec"/>), and as the guest agent reads the spec, a
/// Process (exec) and LinuxResources (update). The same bytes go to each reader.
/// </summary>
internal static class OciTargets
{
    public static void Spec(ReadOnlySpan<byte> data)
    {
        var bytes = data.ToArray();
        try
        {
            var bundle = BundleSpec.Parse(bytes, "config.json");
            _ = bundle.SandboxId("fuzz");
        }
        catch (BundleException)
        {
        }

        Agent(() => CgroupResources.Translate(OciJson.ParseSpec(bytes).Linux?.Resources));
        Agent(() => OciJson.ParseProcess(bytes));
        Agent(() => CgroupResources.Translate(OciJson.ParseResources(bytes)));
        _ = Encoding.UTF8.GetCharCount(data);
    }

    private static void Agent(Action parse)
    {
        try
        {
            parse();
        }
        catch (AgentException)
        {
        }
    }
}
