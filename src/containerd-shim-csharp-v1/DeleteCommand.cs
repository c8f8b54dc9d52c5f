using Containerd.Task.V2;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using ShimV2.Shim.Bundle;
using ShimV2.Shim.Sandbox;

namespace ShimV2.Cli;

/// <summary>
/// `delete`: containerd runs it after every connection close and when a shim is lost. It cleans only its own id,
/// tolerates missing state, never removes the bundle, and answers with a DeleteResponse on stdout.
/// </summary>
internal static class DeleteCommand
{
    private static readonly TimeSpan DaemonAnswerTimeout = TimeSpan.FromSeconds(5);

    public static int Run(ShimFlags flags)
    {
        try
        {
            BundleSpec? spec = null;
            try
            {
                spec = BundleSpec.Load(flags.Bundle);
            }
            catch (BundleException)
            {
                // The bundle may be half gone already; clean what can be found by id.
            }

            var sandboxId = spec?.SandboxId(flags.Id) ?? flags.Id;
            var socket = ShimSocket.PathFor(flags.Address, flags.Namespace, sandboxId);
            var daemonAlive = ShimSocket.Answers(socket, DaemonAnswerTimeout);
            SandboxCleanup.CleanContainer(new SandboxPaths(sandboxId), flags.Id, daemonAlive);
            if (!daemonAlive && File.Exists(socket))
            {
                // A killed shim leaves its socket file; nobody answers on it any more.
                File.Delete(socket);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            Console.Error.WriteLine($"containerd-shim-csharp-v1 delete: {e.Message}");
        }

        var response = new DeleteResponse
        {
            ExitedAt = Timestamp.FromDateTime(DateTime.UtcNow),
            ExitStatus = 128 + 9,
        };
        using var stdout = Console.OpenStandardOutput();
        response.WriteTo(stdout);
        return 0;
    }
}
