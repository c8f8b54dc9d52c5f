using System.ComponentModel;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace ShimV2.Hypervisor.Qemu;

/// <summary>The QEMU (or virtiofsd) child process: started with stdin closed, stdout drained, stderr's last lines kept.</summary>
internal sealed partial class QemuProcess : IDisposable
{
    public const int StderrTailLines = 20;

    private readonly Process process;
    private readonly ILogger logger;
    private readonly LogLevel stderrLevel;
    private readonly Queue<string> stderrTail = new();
    private readonly Task stderrPump;
    private readonly Task stdoutPump;

    private readonly string name;

    private QemuProcess(Process process, ILogger logger, LogLevel stderrLevel, string name)
    {
        this.name = name;
        this.process = process;
        this.logger = logger;
        this.stderrLevel = stderrLevel;
        Pid = process.Id;
        stderrPump = PumpStderrAsync();
        stdoutPump = process.StandardOutput.BaseStream.CopyToAsync(Stream.Null);
        Exited = WaitForExitAsync();
    }

    public int Pid { get; }

    /// <summary>The exit code (128 + signal when killed by one), once the process has exited and was reaped.</summary>
    public Task<int> Exited { get; }

    public bool HasExited => Exited.IsCompleted;

    /// <exception cref="HypervisorException">The executable could not be started.</exception>
    public static QemuProcess Start(
        string executable, IReadOnlyList<string> args, string workingDirectory, ILogger logger, bool debug, string? networkNamespace = null, string name = "qemu")
    {
        var info = new ProcessStartInfo(executable)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = info };
        try
        {
            // The child inherits the namespaces of the thread that forks it.
            if (networkNamespace is null)
            {
                process.Start();
            }
            else
            {
                Netlink.NetworkNamespace.Run(networkNamespace, process.Start);
            }
        }
        catch (Netlink.NetlinkException e)
        {
            process.Dispose();
            throw new HypervisorException($"cannot start qemu in {networkNamespace}: {e.Message}", e);
        }
        catch (Win32Exception e)
        {
            process.Dispose();
            throw new HypervisorException($"cannot start {name} {executable}: {e.Message}", e);
        }

        try
        {
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // Already gone; Exited will say so.
        }

        return new QemuProcess(process, logger, debug ? LogLevel.Information : LogLevel.Debug, name);
    }

    /// <summary>The last stderr lines, oldest first.</summary>
    public IReadOnlyList<string> StderrTail
    {
        get
        {
            lock (stderrTail)
            {
                return stderrTail.ToArray();
            }
        }
    }

    /// <summary>After exit: waits (briefly) for stderr to drain, then picks QEMU's error line.</summary>
    public async Task<string?> FailureReasonAsync()
    {
        await Task.WhenAny(stderrPump, Task.Delay(TimeSpan.FromSeconds(2)));
        return PickReason(StderrTail);
    }

    /// <summary>QEMU prefixes its own errors with its name ("qemu-system-x86_64: ..." or "qemu: ...");
    /// the last such line is the reason, else the last non-empty line.</summary>
    public static string? PickReason(IReadOnlyList<string> lines)
    {
        for (var i = lines.Count - 1; i >= 0; i--)
        {
            var line = lines[i];
            var colon = line.IndexOf(": ", StringComparison.Ordinal);
            if (line.StartsWith("qemu", StringComparison.Ordinal) && colon > 0 && line.AsSpan(0, colon).IndexOf(' ') < 0)
            {
                return line.Trim();
            }
        }

        for (var i = lines.Count - 1; i >= 0; i--)
        {
            if (!string.IsNullOrWhiteSpace(lines[i]))
            {
                return lines[i].Trim();
            }
        }

        return null;
    }

    /// <summary>SIGKILL, if still running.</summary>
    public void Kill()
    {
        if (HasExited)
        {
            return;
        }

        try
        {
            process.Kill();
        }
        catch (Exception e) when (e is InvalidOperationException or Win32Exception)
        {
            // Exited meanwhile.
        }
    }

    /// <summary>SIGKILL and wait until reaped.</summary>
    public async Task KillAndReapAsync()
    {
        Kill();
        await Exited;
    }

    public void Dispose() => process.Dispose();

    private async Task<int> WaitForExitAsync()
    {
        await process.WaitForExitAsync(CancellationToken.None);
        var code = process.ExitCode;
        try
        {
            await stdoutPump;
        }
        catch (IOException)
        {
            // Pipe broke; nothing to keep.
        }

        return code;
    }

    private async Task PumpStderrAsync()
    {
        try
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
            {
                LogStderr(logger, stderrLevel, name, Pid, line);
                lock (stderrTail)
                {
                    stderrTail.Enqueue(line);
                    while (stderrTail.Count > StderrTailLines)
                    {
                        stderrTail.Dequeue();
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // Process gone.
        }
    }

    [LoggerMessage(Message = "{Name}[{Pid}] stderr: {Line}")]
    private static partial void LogStderr(ILogger logger, LogLevel level, string name, int pid, string line);
}
