using Containerd.Runtime.Bootstrap.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace ShimV2.Shim.Config;

/// <summary>
/// Runtime options containerd hands the shim: on start's stdin (an Any, or containerd 2.3's BootstrapParams)
/// and in CreateTaskRequest.options.
/// </summary>
public sealed record RuntimeOptions(string? ConfigPath, string? TtrpcAddress = null, string? Namespace = null)
{
    public const string OptionsTypeName = "runtimeoptions.v1.Options";

    public static readonly RuntimeOptions None = new((string?)null);

    /// <summary>Reads an Any carrying runtimeoptions.v1.Options; any other type carries nothing for us.</summary>
    public static RuntimeOptions FromAny(Any? any)
    {
        if (any is null || !IsOptionsType(any.TypeUrl))
        {
            return None;
        }

        var options = Containerd.RuntimeOptions.V1.Options.Parser.ParseFrom(any.Value);
        return new RuntimeOptions(string.IsNullOrEmpty(options.ConfigPath) ? null : options.ConfigPath);
    }

    /// <summary>
    /// Decodes start's stdin. A raw Any has only fields 1 and 2 (strings/bytes); BootstrapParams uses fields 1-9.
    /// </summary>
    public static RuntimeOptions FromStartInput(byte[] input)
    {
        if (input.Length == 0)
        {
            return None;
        }

        try
        {
            if (OnlyFieldsOneAndTwo(input))
            {
                return FromAny(Any.Parser.ParseFrom(input));
            }

            var bootstrap = BootstrapParams.Parser.ParseFrom(input);
            string? configPath = null;
            foreach (var extension in bootstrap.Extensions)
            {
                configPath ??= FromAny(extension.Value).ConfigPath;
            }

            return new RuntimeOptions(
                configPath,
                string.IsNullOrEmpty(bootstrap.ContainerdTtrpcAddress) ? null : bootstrap.ContainerdTtrpcAddress,
                string.IsNullOrEmpty(bootstrap.Namespace) ? null : bootstrap.Namespace);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new FormatException($"cannot decode runtime options on stdin: {e.Message}", e);
        }
    }

    private static bool IsOptionsType(string typeUrl) =>
        typeUrl == OptionsTypeName || typeUrl.EndsWith("/" + OptionsTypeName, StringComparison.Ordinal);

    private static bool OnlyFieldsOneAndTwo(byte[] input)
    {
        var reader = new CodedInputStream(input);
        uint tag;
        while ((tag = reader.ReadTag()) != 0)
        {
            var field = WireFormat.GetTagFieldNumber(tag);
            if (field is not (1 or 2))
            {
                return false;
            }

            reader.SkipLastField();
        }

        return true;
    }
}
