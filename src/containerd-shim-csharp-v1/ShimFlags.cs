namespace ShimV2.Cli;

/// <summary>The flags containerd passes to every invocation (Go flag style: -name value).</summary>
internal sealed record ShimFlags(
    string Namespace,
    string Address,
    string PublishBinary,
    string Id,
    string Bundle,
    bool Debug,
    string? Socket)
{
    /// <summary>containerd's TTRPC socket: TTRPC_ADDRESS, else containerd's convention of &lt;address&gt;.ttrpc.</summary>
    public string TtrpcAddress =>
        StripUnix(Environment.GetEnvironmentVariable("TTRPC_ADDRESS") is { Length: > 0 } a ? a : Address + ".ttrpc");

    public static string StripUnix(string address) =>
        address.StartsWith("unix://", StringComparison.Ordinal) ? address["unix://".Length..] : address;
}
