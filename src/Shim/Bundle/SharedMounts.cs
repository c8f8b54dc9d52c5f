using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ShimV2.Hypervisor;

namespace ShimV2.Shim.Bundle;

/// <summary>A host path the guest needs for a bind mount, and where it appears in the share.</summary>
/// <param name="HostSource">The bind source as the spec named it on the host.</param>
/// <param name="ShareRelativePath">Its place under the container's share directory, e.g. "mounts/0-data", or for a
/// volume with shared or slave propagation "../volumes/&lt;key&gt;-data", beside it, one per pod and host source
/// (mounted until the pod stops).</param>
/// <param name="IsDirectory">Whether the source is a directory (a file bind needs a file to mount on).</param>
/// <param name="ReadOnly">Whether the spec asked for "ro".</param>
public sealed record SharedMount(string HostSource, string ShareRelativePath, bool IsDirectory, bool ReadOnly);

/// <summary>
/// Bind mounts name host paths, but the container lives in the guest: each bind source is exported through
/// the sandbox's share and the spec handed to the agent names the guest path instead (as Kata does).
/// </summary>
public static class SharedMounts
{
    public const string MountsDirectory = "mounts";

    /// <summary>The share's directory (beside the containers') of volumes the pod's containers share a mount of.</summary>
    public const string VolumesDirectory = "volumes";

    private static readonly HashSet<string> PropagatingOptions = new(StringComparer.Ordinal) { "shared", "rshared", "slave", "rslave" };

    private static string GuestShareRoot(string guestContainerDirectory) =>
        guestContainerDirectory.TrimEnd('/') is var d && d.LastIndexOf('/') is > 0 and var slash ? d[..slash] : "/";

    /// <summary>Rewrites the spec's bind sources to <paramref name="guestContainerDirectory"/>/mounts/N-name.</summary>
    /// <exception cref="BundleException">A bind source is not an absolute path or does not exist.</exception>
    public static (byte[] Json, IReadOnlyList<SharedMount> Mounts) Rewrite(byte[] specJson, string guestContainerDirectory)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(specJson);
        }
        catch (JsonException e)
        {
            throw new BundleException($"invalid OCI spec: {e.Message}");
        }

        if (root is not JsonObject spec || spec["mounts"] is not JsonArray mounts)
        {
            return (specJson, []);
        }

        var shared = new List<SharedMount>();
        for (var i = 0; i < mounts.Count; i++)
        {
            if (mounts[i] is not JsonObject mount || !IsBind(mount) || mount["source"]?.GetValueKind() != JsonValueKind.String)
            {
                continue;
            }

            var source = mount["source"]!.GetValue<string>();
            if (!Path.IsPathFullyQualified(source))
            {
                throw new BundleException($"bind mount source \"{source}\" is not an absolute path");
            }

            var isDirectory = Directory.Exists(source);
            if (!isDirectory && !File.Exists(source))
            {
                throw new BundleException($"bind mount source {source} does not exist");
            }

            var name = Path.GetFileName(source.TrimEnd('/'));
            name = name.Length == 0 ? "root" : name;
            var readOnly = Options(mount).Contains("ro");
            if (isDirectory && Options(mount).Any(o => PropagatingOptions.Contains(o)))
            {
                // A volume with shared or slave propagation: every container of the pod binds the same guest
                // directory, so a mount one of them makes under it reaches the others inside the VM (two shares
                // of one host directory would be two unrelated mounts in the guest).
                var key = Convert.ToHexString(Sha256.HashData(Encoding.UTF8.GetBytes($"{source}\n{readOnly}")))[..16].ToLowerInvariant();
                var volume = $"{VolumesDirectory}/{key}-{name}";
                shared.Add(new SharedMount(source, $"../{volume}", isDirectory, readOnly));
                mount["source"] = $"{GuestShareRoot(guestContainerDirectory)}/{volume}";
                continue;
            }

            var relative = $"{MountsDirectory}/{i}-{name}";
            shared.Add(new SharedMount(source, relative, isDirectory, readOnly));
            mount["source"] = $"{guestContainerDirectory}/{relative}";
        }

        if (shared.Count == 0)
        {
            return (specJson, shared);
        }

        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            root.WriteTo(writer);
        }

        return (buffer.ToArray(), shared);
    }

    private static bool IsBind(JsonObject mount)
    {
        var type = mount["type"]?.GetValueKind() == JsonValueKind.String ? mount["type"]!.GetValue<string>() : null;
        return type is "bind" or "rbind" || Options(mount).Any(o => o is "bind" or "rbind");
    }

    private static List<string> Options(JsonObject mount) =>
        mount["options"] is JsonArray options
            ? options.Where(o => o?.GetValueKind() == JsonValueKind.String).Select(o => o!.GetValue<string>()).ToList()
            : [];
}
