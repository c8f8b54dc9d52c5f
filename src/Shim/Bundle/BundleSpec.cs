using System.Text.Json;

namespace ShimV2.Shim.Bundle;

/// <summary>What the shim itself needs from a bundle's config.json; the full spec goes to the guest as-is.</summary>
public sealed class BundleSpec
{
    public const string SandboxIdAnnotation = "io.kubernetes.cri.sandbox-id";
    public const string ContainerTypeAnnotation = "io.kubernetes.cri.container-type";

    private BundleSpec(byte[] json, IReadOnlyDictionary<string, string> annotations, string? hostname, bool terminal, string? networkNamespace, bool hostNetwork, string? cgroupsPath = null)
    {
        CgroupsPath = cgroupsPath;
        NetworkNamespace = networkNamespace;
        HostNetwork = hostNetwork;
        Json = json;
        Annotations = annotations;
        Hostname = hostname;
        Terminal = terminal;
    }

    /// <summary>The raw config.json bytes.</summary>
    public byte[] Json { get; }

    public IReadOnlyDictionary<string, string> Annotations { get; }

    public string? Hostname { get; }

    public bool Terminal { get; }

    /// <summary>linux.namespaces' network path (CRI's /var/run/netns/cni-..., ctr's --with-ns): the pod's network.</summary>
    public string? NetworkNamespace { get; }

    /// <summary>linux.namespaces has no network entry: the container asks for the host's network (hostNetwork, --net-host).</summary>
    public bool HostNetwork { get; }

    /// <summary>CRI's pod sandbox (pause) container, by its container-type annotation.</summary>
    public bool IsCriSandbox => Annotations.TryGetValue(ContainerTypeAnnotation, out var type) && type == "sandbox";

    /// <summary>
    /// Why the runtime refuses this container, or null. A hostNetwork pod would run in a VM that cannot share the
    /// host's network namespace: it is refused at RunPodSandbox rather than started without the network it asks for.
    /// </summary>
    public string? RefusalReason => IsCriSandbox && HostNetwork
        ? "hostNetwork pods are not supported by runtime io.containerd.csharp.v1: the pod runs in its own VM, which cannot share the host's network namespace"
        : null;
    /// <summary>linux.cgroupsPath as given (CRI: /kubepods/.../pod&lt;uid&gt;/&lt;id&gt; or slice:prefix:name; ctr: /&lt;ns&gt;/&lt;id&gt;).</summary>
    public string? CgroupsPath { get; }

    /// <summary>The id of the sandbox (pod) this container belongs to: CRI's annotation, else its own id.</summary>
    public string SandboxId(string containerId) =>
        Annotations.TryGetValue(SandboxIdAnnotation, out var sandboxId) && sandboxId.Length > 0 ? sandboxId : containerId;

    /// <summary>Whether this container is the pod's sandbox (or a standalone container, as with ctr).</summary>
    public bool IsSandbox(string containerId) => SandboxId(containerId) == containerId;

    public static BundleSpec Load(string bundle)
    {
        var path = Path.Combine(bundle, "config.json");
        byte[] json;
        try
        {
            json = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BundleException($"cannot read {path}: {e.Message}");
        }

        return Parse(json, path);
    }

    public static BundleSpec Parse(byte[] json, string source)
    {
        // JsonDocument validates UTF-8 only when a string is read, and then throws InvalidOperationException.
        if (!System.Text.Unicode.Utf8.IsValid(json))
        {
            throw new BundleException($"invalid OCI spec {source}: not valid UTF-8");
        }

        try
        {
            using var document = JsonDocument.Parse(json);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new BundleException($"invalid OCI spec {source}: not a JSON object");
            }

            var annotations = new Dictionary<string, string>(StringComparer.Ordinal);
            if (root.TryGetProperty("annotations", out var a) && a.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in a.EnumerateObject())
                {
                    if (property.Value.ValueKind == JsonValueKind.String)
                    {
                        annotations[property.Name] = property.Value.GetString()!;
                    }
                }
            }

            string? hostname = root.TryGetProperty("hostname", out var h) && h.ValueKind == JsonValueKind.String ? h.GetString() : null;
            var terminal = root.TryGetProperty("process", out var p) && p.ValueKind == JsonValueKind.Object
                && p.TryGetProperty("terminal", out var t) && t.ValueKind == JsonValueKind.True;
            string? netns = null;
            var hostNetwork = true;
            if (root.TryGetProperty("linux", out var linux) && linux.ValueKind == JsonValueKind.Object
                && linux.TryGetProperty("namespaces", out var namespaces) && namespaces.ValueKind == JsonValueKind.Array)
            {
                foreach (var ns in namespaces.EnumerateArray())
                {
                    if (ns.ValueKind != JsonValueKind.Object || !ns.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String
                        || type.GetString() != "network")
                    {
                        continue;
                    }

                    hostNetwork = false;
                    if (ns.TryGetProperty("path", out var path) && path.ValueKind == JsonValueKind.String && path.GetString() is { Length: > 0 } value)
                    {
                        netns = value;
                    }
                }
            }

            string? cgroupsPath = root.TryGetProperty("linux", out var l) && l.ValueKind == JsonValueKind.Object
                && l.TryGetProperty("cgroupsPath", out var c) && c.ValueKind == JsonValueKind.String && c.GetString() is { Length: > 0 } cg ? cg : null;
            return new BundleSpec(json, annotations, string.IsNullOrEmpty(hostname) ? null : hostname, terminal, netns, hostNetwork, cgroupsPath);
        }
        catch (JsonException e)
        {
            throw new BundleException($"invalid OCI spec {source}: {e.Message}");
        }
    }
}

/// <summary>A bundle that cannot be used; the message is for the user.</summary>
public sealed class BundleException(string message) : Exception(message);
