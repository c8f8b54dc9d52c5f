using System.Text.Json;

namespace ShimV2.Hypervisor;

/// <summary>Reads and validates a <see cref="HypervisorConfig"/> JSON file.</summary>
public static class HypervisorConfigLoader
{
    /// <summary>Loads, validates values and (unless <paramref name="checkPaths"/> is false) checks that qemu,
    /// the kernel and the initrd exist.</summary>
    /// <exception cref="HypervisorConfigException">One line naming the file and the setting at fault.</exception>
    public static HypervisorConfig Load(string path, bool checkPaths = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var config = Parse(ReadFile(path), path);
        config.SourcePath = path;
        HypervisorConfigValidator.Validate(config);
        if (checkPaths)
        {
            HypervisorConfigValidator.ValidatePaths(config);
        }

        return config;
    }

    /// <summary>Parses JSON text without validating; <paramref name="sourcePath"/> only names the file in errors.</summary>
    public static HypervisorConfig Parse(string json, string sourcePath)
    {
        HypervisorConfig? config;
        try
        {
            config = JsonSerializer.Deserialize(json, HypervisorConfigJsonContext.Default.HypervisorConfig);
        }
        catch (JsonException e)
        {
            throw new HypervisorConfigException($"invalid hypervisor config {sourcePath}: {Describe(e)}", e);
        }

        if (config is null)
        {
            throw new HypervisorConfigException($"invalid hypervisor config {sourcePath}: the file holds null, expected an object");
        }

        config.SourcePath = sourcePath;
        return config;
    }

    public static string Serialize(HypervisorConfig config) =>
        JsonSerializer.Serialize(config, HypervisorConfigJsonContext.Default.HypervisorConfig);

    private static string ReadFile(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new HypervisorConfigException($"hypervisor config not found: {path}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HypervisorConfigException($"cannot read hypervisor config {path}: {e.Message}", e);
        }
    }

    private static string Describe(JsonException e)
    {
        // System.Text.Json appends " Path: $.x | LineNumber: 2 | BytePositionInLine: 7." to its messages.
        var reason = e.Message;
        var cut = reason.IndexOf(" Path: ", StringComparison.Ordinal);
        if (cut >= 0)
        {
            reason = reason[..cut];
        }

        var where = e.LineNumber is { } line
            ? $"line {line + 1}, column {(e.BytePositionInLine ?? 0) + 1}"
            : "unknown position";
        var hasProperty = !string.IsNullOrEmpty(e.Path) && e.Path != "$";
        var property = hasProperty ? $" ({e.Path})" : "";
        var field = hasProperty ? e.Path![(e.Path!.LastIndexOf('.') + 1)..] : "";
        return $"{where}{property}: {Friendly(reason.TrimEnd('.'), field)}";
    }

    /// <summary>Says System.Text.Json's common complaints in the config's own terms.</summary>
    private static string Friendly(string reason, string field)
    {
        if (reason.Contains("could not be mapped to any .NET member", StringComparison.Ordinal))
        {
            return $"unknown field \"{field}\"";
        }

        if (reason.Contains("doesn't allow setting null values", StringComparison.Ordinal))
        {
            return $"{field} must not be null";
        }

        if (reason.StartsWith("The input does not contain any JSON tokens", StringComparison.Ordinal))
        {
            return "the file is empty";
        }

        const string Convert = "The JSON value could not be converted to ";
        if (reason.StartsWith(Convert, StringComparison.Ordinal))
        {
            var expected = reason[Convert.Length..] switch
            {
                "System.Int32" => "a whole number",
                "System.String" => "a string",
                "System.Boolean" => "true or false",
                var t when t.EndsWith(nameof(HypervisorConfig), StringComparison.Ordinal) => "an object",
                var t => t,
            };
            return field.Length == 0 ? $"expected {expected}" : $"{field} must be {expected}";
        }

        return reason;
    }
}
