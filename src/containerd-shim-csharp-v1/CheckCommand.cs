using ShimV2.Cli.Check;

namespace ShimV2.Cli;

/// <summary>
/// `check [--config PATH]`: what this host can and cannot do for pods, one line per item (ok / warn / fail), before
/// the first pod. Exit code 1 when a pod could not start (any fail), else 0. Boots nothing.
/// </summary>
internal static class CheckCommand
{
    public static async Task<int> RunAsync(string? configPath, string containerdSocket, CancellationToken ct)
    {
        var loaded = LoadedConfig.Load(configPath);
        var failed = false;
        try
        {
            await foreach (var item in HostChecks.RunAsync(loaded, containerdSocket, ct))
            {
                failed |= item.Status == CheckStatus.Fail;
                Console.WriteLine(item);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Whatever went wrong is one line, not a stack trace.
            Console.WriteLine(CheckItem.Fail("check", $"could not finish: {e.Message}"));
            return 1;
        }

        Console.WriteLine(failed ? "a pod could not start on this host with this config" : "pods can start on this host with this config");
        return failed ? 1 : 0;
    }
}
