using System.Text.Json;
using ShimV2.Cli.Check;
using ShimV2.Hypervisor;
using ShimV2.Shim.Sandbox;

namespace ShimV2.Cli;

/// <summary>
/// `env [--config PATH]`: the effective config after defaults and the host's answers to "auto", as JSON on stdout.
/// A config that does not load is a one-line error on stderr and exit code 1.
/// </summary>
internal static class EnvCommand
{
    public static int Run(string? configPath)
    {
        var loaded = LoadedConfig.Load(configPath);
        if (loaded.Error is not null)
        {
            Console.Error.WriteLine($"containerd-shim-csharp-v1 env: {loaded.Error}");
            return 1;
        }

        var config = loaded.Config;
        var accelerator = HostOutlook.Accelerator(config);
        string? transport = null;
        string? transportError = null;
        try
        {
            transport = HostOutlook.Transport(config) == AgentTransportKind.Vsock ? "vsock" : "virtio-serial";
        }
        catch (HypervisorConfigException e)
        {
            transportError = e.Message;
        }

        using var stdout = Console.OpenStandardOutput();
        using (var json = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("version", ShimV2.Shim.Tasks.TaskService.Version);
            json.WriteString("configPath", loaded.Path);
            json.WritePropertyName("config");
            using (var effective = JsonDocument.Parse(HypervisorConfigLoader.Serialize(config)))
            {
                effective.RootElement.WriteTo(json);
            }

            json.WriteStartObject("accelerator");
            json.WriteString("configured", config.Accelerator);
            WriteNullable(json, "resolved", accelerator.Accelerator?.ToString().ToLowerInvariant());
            json.WriteString("plan", accelerator.Plan);
            json.WriteString("reason", accelerator.Reason);
            WriteNullable(json, "verdictFile", accelerator.VerdictFile);
            json.WriteEndObject();

            json.WriteStartObject("agentTransport");
            json.WriteString("configured", config.AgentTransport);
            WriteNullable(json, "resolved", transport);
            if (transportError is not null)
            {
                json.WriteString("error", transportError);
            }

            json.WriteEndObject();

            json.WriteStartObject("paths");
            json.WriteString("qemu", config.QemuPath);
            json.WriteString("kernel", config.KernelPath);
            json.WriteString("initrd", config.InitrdPath);
            json.WriteString("sandboxRoot", Environment.GetEnvironmentVariable("CSHARP_SHIM_STATE_ROOT") ?? SandboxPaths.DefaultRoot);
            json.WriteString("kvmVerdicts", HostOutlook.VerdictDirectory);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        Console.WriteLine();
        return accelerator.Accelerator is null || transportError is not null ? 1 : 0;
    }

    private static void WriteNullable(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }
}
