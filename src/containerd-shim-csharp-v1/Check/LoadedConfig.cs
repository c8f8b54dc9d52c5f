using ShimV2.Hypervisor;
using ShimV2.Shim.Tasks;

namespace ShimV2.Cli.Check;

/// <summary>The hypervisor config `check` and `env` look at: --config, else the one the daemon would use.</summary>
internal sealed record LoadedConfig(string Path, HypervisorConfig Config, string? Error)
{
    /// <summary>Where the daemon looks when containerd's runtime options name no config.</summary>
    public static string DefaultPath =>
        Environment.GetEnvironmentVariable(DaemonCommand.ConfigPathVariable) is { Length: > 0 } path ? path : TaskService.DefaultConfigPath;

    /// <summary>Values are validated, paths are not (they are items of their own). On error the defaults stand
    /// in, so the host can still be checked.</summary>
    public static LoadedConfig Load(string? path)
    {
        path ??= DefaultPath;
        try
        {
            return new LoadedConfig(path, HypervisorConfigLoader.Load(path, checkPaths: false), null);
        }
        catch (HypervisorConfigException e)
        {
            return new LoadedConfig(path, new HypervisorConfig { SourcePath = path }, e.Message);
        }
    }
}
