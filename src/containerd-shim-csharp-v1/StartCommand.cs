using ShimV2.Shim.Bundle;
using ShimV2.Shim.Config;

namespace ShimV2.Cli;

/// <summary>
/// `start`: find or start the pod's shim, write the bundle's address file and print the address — nothing else on
/// stdout or stderr but a one-line error (containerd reads the combined output).
/// </summary>
internal static class StartCommand
{
    private static System.Net.Sockets.Socket? s_listener;

    public static int Run(ShimFlags flags)
    {
        try
        {
            var options = RuntimeOptions.FromStartInput(ReadStdin());
            var spec = BundleSpec.Load(flags.Bundle);
            var ns = options.Namespace ?? flags.Namespace;
            var groupId = spec.SandboxId(flags.Id);
            var path = ShimSocket.PathFor(flags.Address, ns, groupId);
            var address = ShimSocket.Address(path);

            if (!ShimSocket.Accepts(path))
            {
                // Never disposed on success: .NET unlinks a socket file it bound when the Socket is disposed, and the
                // daemon now owns the listening fd. Process exit closes our copy.
                var listener = ShimSocket.Listen(path);
                s_listener = listener;
                var environment = Environment.GetEnvironmentVariables()
                    .Cast<System.Collections.DictionaryEntry>()
                    .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? string.Empty, StringComparer.Ordinal);
                if (options.TtrpcAddress is not null)
                {
                    environment["TTRPC_ADDRESS"] = options.TtrpcAddress;
                }

                if (options.ConfigPath is not null)
                {
                    environment[DaemonCommand.ConfigPathVariable] = options.ConfigPath;
                }

                if (OomScore.Read(Environment.ProcessId == 1 ? 1 : GetParentPid()) is { } score)
                {
                    environment[OomScore.ParentScoreVariable] = score.ToString(System.Globalization.CultureInfo.InvariantCulture);
                }

                List<string> args =
                [
                    "-namespace", ns, "-id", flags.Id, "-address", flags.Address, "-publish-binary", flags.PublishBinary,
                    "-bundle", flags.Bundle, "-socket", path,
                ];
                if (flags.Debug)
                {
                    args.Add("-debug");
                }

                try
                {
                    DaemonSpawner.Spawn(Environment.ProcessPath!, args, environment, (int)listener.SafeHandle.DangerousGetHandle());
                }
                catch
                {
                    listener.Dispose();
                    File.Delete(path);
                    throw;
                }
            }

            WriteAddressFile(flags.Bundle, address);
            WriteStdout(address);
            return 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or BundleException or FormatException or System.Net.Sockets.SocketException)
        {
            Console.Error.WriteLine($"containerd-shim-csharp-v1 start: {e.Message}");
            return 1;
        }
    }

    /// <summary>Atomically, with no trailing newline: containerd's reconnect after a restart fails otherwise.</summary>
    private static void WriteAddressFile(string bundle, string address)
    {
        var target = Path.Combine(bundle, "address");
        var temporary = target + ".tmp";
        File.WriteAllText(temporary, address);
        File.Move(temporary, target, overwrite: true);
    }

    /// <summary>Straight to fd 1: Console.Out would first set up .NET's terminal handling (a signal thread, terminfo),
    /// which a one-line answer to containerd does not need.</summary>
    private static void WriteStdout(string text)
    {
        using var stdout = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(1, ownsHandle: false), FileAccess.Write, bufferSize: 0);
        stdout.Write(System.Text.Encoding.UTF8.GetBytes(text));
    }

    private static byte[] ReadStdin()
    {
        if (!Console.IsInputRedirected)
        {
            return [];
        }

        using var stdin = Console.OpenStandardInput();
        using var buffer = new MemoryStream();
        stdin.CopyTo(buffer);
        return buffer.ToArray();
    }

    private static int GetParentPid()
    {
        // /proc/self/stat: pid (comm) state ppid ...; comm may contain spaces, so parse after the last ')'.
        var stat = File.ReadAllText("/proc/self/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
    }
}
