using System.Diagnostics;
using System.Text;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>The outcome of a finished command.</summary>
public sealed record ProcessResult(string CommandLine, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public override string ToString() =>
        $"`{CommandLine}` exited {ExitCode} after {Elapsed.TotalSeconds:0.0} s\n--- stdout ---\n{Tail(Stdout)}\n--- stderr ---\n{Tail(Stderr)}";

    private static string Tail(string s) => s.Length <= 4000 ? s : "..." + s[^4000..];
}

/// <summary>How to feed and drain a command.</summary>
public sealed class ProcessOptions
{
    /// <summary>Writes the command's stdin; the stream is closed afterwards. Null: stdin is closed at once (EOF).</summary>
    public Func<Stream, Task>? Stdin { get; init; }

    /// <summary>Receives stdout instead of it being captured as text (for big outputs).</summary>
    public Stream? StdoutSink { get; init; }

    /// <summary>Keep stdin open (never EOF) until the process exits; ignored when <see cref="Stdin"/> is set.</summary>
    public bool HoldStdinOpen { get; init; }

    public IReadOnlyDictionary<string, string>? Environment { get; init; }
}

/// <summary>
/// A child process started with an argument list (no shell), its stdout and stderr drained continuously.
/// Waits are bounded: a command that outlives its timeout is killed (with its children) and the wait throws.
/// </summary>
public sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Task _stdout;
    private readonly Task _stderr;
    private readonly Task _stdin;
    private readonly MemoryStream _stdoutBuffer = new();
    private readonly MemoryStream _stderrBuffer = new();
    private readonly object _lock = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly TaskCompletionSource _stdinRelease = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<string>? _log;

    private HostProcess(Process process, ProcessOptions options, Action<string>? log)
    {
        _process = process;
        _log = log;
        CommandLine = Render(process.StartInfo.FileName, process.StartInfo.ArgumentList);
        _stdout = Pump(process.StandardOutput.BaseStream, options.StdoutSink ?? _stdoutBuffer, options.StdoutSink is null);
        _stderr = Pump(process.StandardError.BaseStream, _stderrBuffer, true);
        _stdin = FeedStdin(process.StandardInput.BaseStream, options);
    }

    public string CommandLine { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>What stdout said so far (unless it goes to a sink).</summary>
    public string StdoutSoFar
    {
        get
        {
            lock (_lock)
            {
                return Encoding.UTF8.GetString(_stdoutBuffer.GetBuffer(), 0, (int)_stdoutBuffer.Length);
            }
        }
    }

    public string StderrSoFar
    {
        get
        {
            lock (_lock)
            {
                return Encoding.UTF8.GetString(_stderrBuffer.GetBuffer(), 0, (int)_stderrBuffer.Length);
            }
        }
    }

    public static HostProcess Start(string file, IEnumerable<string> args, ProcessOptions? options = null, Action<string>? log = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        if (options?.Environment is { } env)
        {
            foreach (var (k, v) in env)
            {
                psi.Environment[k] = v;
            }
        }

        var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        return new HostProcess(process, options ?? new ProcessOptions(), log);
    }

    /// <summary>Runs to completion within <paramref name="timeout"/> (else kills it and throws TimeoutException).</summary>
    public static async Task<ProcessResult> RunAsync(
        string file, IEnumerable<string> args, TimeSpan timeout, ProcessOptions? options = null, Action<string>? log = null)
    {
        await using var p = Start(file, args, options, log);
        return await p.WaitAsync(timeout);
    }

    /// <summary>Lets a <see cref="ProcessOptions.HoldStdinOpen"/> process see EOF.</summary>
    public void CloseStdin() => _stdinRelease.TrySetResult();

    /// <summary>Waits for exit and for its output to be drained; kills it and throws when the timeout passes first.</summary>
    public async Task<ProcessResult> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            await Task.WhenAll(_stdout, _stderr).WaitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
            throw new TimeoutException(
                $"`{CommandLine}` did not finish within {timeout.TotalSeconds:0} s (killed)\n--- stdout so far ---\n{Tail(StdoutSoFar)}\n--- stderr so far ---\n{Tail(StderrSoFar)}");
        }

        _stdinRelease.TrySetResult();
        var result = new ProcessResult(CommandLine, _process.ExitCode, StdoutSoFar, StderrSoFar, _clock.Elapsed);
        _log?.Invoke($"$ {Shorten(CommandLine)}  -> exit {result.ExitCode} in {result.Elapsed.TotalSeconds:0.00} s");
        return result;
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        _stdinRelease.TrySetResult();
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(cts.Token);
            await Task.WhenAll(_stdout, _stderr, _stdin).WaitAsync(cts.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            // Best effort: the process is killed; its pipes close with it.
        }

        _process.Dispose();
        _stdoutBuffer.Dispose();
        _stderrBuffer.Dispose();
    }

    public static string Render(string file, IEnumerable<string> args) =>
        string.Join(' ', new[] { file }.Concat(args).Select(a => a.Length == 0 || a.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' or '$' or ';' or '&' or '|')
            ? "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'"
            : a));

    private static string Shorten(string s) => s.Length <= 300 ? s : s[..300] + "...";

    private static string Tail(string s) => s.Length <= 4000 ? s : "..." + s[^4000..];

    private async Task Pump(Stream from, Stream to, bool locked)
    {
        var buffer = new byte[81920];
        int n;
        while ((n = await from.ReadAsync(buffer)) > 0)
        {
            if (locked)
            {
                lock (_lock)
                {
                    to.Write(buffer, 0, n);
                }
            }
            else
            {
                await to.WriteAsync(buffer.AsMemory(0, n));
            }
        }
    }

    private async Task FeedStdin(Stream stdin, ProcessOptions options)
    {
        try
        {
            if (options.Stdin is { } feed)
            {
                await feed(stdin);
            }
            else if (options.HoldStdinOpen)
            {
                await _stdinRelease.Task;
            }
        }
        catch (IOException)
        {
            // The process stopped reading (it exited): what it did not read is its business.
        }
        catch (Exception e)
        {
            // A feeder that gave up (e.g. waited in vain for an event): the command sees EOF; say why.
            _log?.Invoke($"stdin feeder of `{Shorten(CommandLine)}` failed: {e.Message}");
        }
        finally
        {
            try
            {
                await stdin.DisposeAsync();
            }
            catch (IOException)
            {
                // Broken pipe on close: same as above.
            }
        }
    }
}
