using System.ComponentModel;
using System.Diagnostics;

namespace ShimV2.Cli.Check;

/// <summary>What the configured QEMU binary says about itself: its version and the devices it was built with.</summary>
internal static class QemuInfo
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>The first line of `qemu -version`, e.g. "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".</summary>
    public static async Task<string> VersionAsync(string qemu, CancellationToken ct)
    {
        var output = await RunAsync(qemu, ["-version"], ct);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault()
            ?? throw new CheckException($"{qemu} -version printed nothing");
    }

    /// <summary>Device names from `qemu -device help` (lines like: name "virtio-9p-pci", bus PCI, desc "...").</summary>
    public static async Task<IReadOnlySet<string>> DevicesAsync(string qemu, CancellationToken ct)
    {
        var output = await RunAsync(qemu, ["-nodefaults", "-machine", "none", "-device", "help"], ct);
        var devices = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n'))
        {
            const string Prefix = "name \"";
            var start = line.IndexOf(Prefix, StringComparison.Ordinal);
            if (start < 0)
            {
                continue;
            }

            start += Prefix.Length;
            var end = line.IndexOf('"', start);
            if (end > start)
            {
                devices.Add(line[start..end]);
            }
        }

        return devices.Count > 0 ? devices : throw new CheckException($"{qemu} -device help listed no devices");
    }

    private static async Task<string> RunAsync(string executable, IReadOnlyList<string> args, CancellationToken ct)
    {
        var info = new ProcessStartInfo(executable)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = new Process { StartInfo = info };
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            throw new CheckException($"cannot run {executable}: {e.Message}");
        }

        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(Timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            await process.WaitForExitAsync(CancellationToken.None);
            throw new CheckException($"{executable} {string.Join(' ', args)} did not finish within {Timeout.TotalSeconds:0} s");
        }

        var output = await stdout;
        if (process.ExitCode != 0)
        {
            var error = (await stderr).Trim().Split('\n').LastOrDefault() ?? "";
            throw new CheckException($"{executable} {string.Join(' ', args)} failed (exit code {process.ExitCode}){(error.Length == 0 ? "" : ": " + error)}");
        }

        return output;
    }
}

/// <summary>A check that could not be made; the message is the item's one line.</summary>
internal sealed class CheckException(string message) : Exception(message);
