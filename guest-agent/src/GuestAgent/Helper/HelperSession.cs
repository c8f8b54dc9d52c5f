using System.Globalization;
using System.Text;
using ShimV2.GuestAgent.Native;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Helper;

/// <summary>
/// One run of csharp-nsexec: spawns it with the process's stdio, the instruction pipe (fd 3), the sync pipe
/// (fd 4, text lines back) and the start pipe (fd 5); waits for "pid" and "ready"; later lets it exec.
/// </summary>
internal sealed class HelperSession : IDisposable
{
    private readonly SyncReader _sync;
    private int _startWrite;

    private HelperSession(int pid, Task<ProcessExit> exit, SyncReader sync, int startWrite)
    {
        Pid = pid;
        Exit = exit;
        _sync = sync;
        _startWrite = startWrite;
    }

    /// <summary>The container process, as the agent's PID namespace sees it.</summary>
    public int Pid { get; }

    /// <summary>Completes when the container process has exited (from the reaper).</summary>
    public Task<ProcessExit> Exit { get; }

    /// <summary>Runs the helper until the process is set up and blocked before exec.</summary>
    /// <param name="helperPath">The csharp-nsexec binary.</param>
    /// <param name="instructions">The encoded instruction stream.</param>
    /// <param name="stdio">The fds the process gets as 0, 1, 2.</param>
    /// <param name="onHelperSpawned">Runs with the helper's pid before it gets its instructions (cgroup placement).</param>
    /// <param name="ct">Cancels: the helper and the process are killed.</param>
    /// <exception cref="AgentException">FailedPrecondition with the helper's message when setup failed.</exception>
    public static async Task<HelperSession> LaunchAsync(
        string helperPath,
        byte[] instructions,
        (int Stdin, int Stdout, int Stderr) stdio,
        Action<int>? onHelperSpawned,
        CancellationToken ct)
    {
        var reaper = ProcessReaper.Shared;
        var mark = reaper.Mark;
        int instrRead = -1, instrWrite = -1, syncRead = -1, syncWrite = -1, startRead = -1, startWrite = -1;
        var helperPid = 0;
        try
        {
            (instrRead, instrWrite) = Libc.Pipe();
            (syncRead, syncWrite) = Libc.Pipe();
            (startRead, startWrite) = Libc.Pipe();
            try
            {
                helperPid = Spawner.Spawn(
                    helperPath,
                    ["csharp-nsexec"],
                    [],
                    [(stdio.Stdin, 0), (stdio.Stdout, 1), (stdio.Stderr, 2), (instrRead, 3), (syncWrite, 4), (startRead, 5)]);
            }
            catch (NativeIOException e)
            {
                throw new AgentException(TtrpcStatusCode.Internal, $"cannot run the container helper {helperPath}: {e.Message}");
            }

            var helperExit = reaper.WaitForExitAsync(helperPid, mark);
            Libc.CloseQuietly(ref instrRead);
            Libc.CloseQuietly(ref syncWrite);
            Libc.CloseQuietly(ref startRead);

            try
            {
                onHelperSpawned?.Invoke(helperPid);
            }
            catch
            {
                Libc.kill(helperPid, Libc.SIGKILL);
                throw;
            }

            var sync = new SyncReader(syncRead);
            syncRead = -1;
            var instrFd = instrWrite;
            instrWrite = -1;
            await Task.Run(
                () =>
                {
                    try
                    {
                        Libc.WriteAll(instrFd, instructions);
                    }
                    catch (NativeIOException)
                    {
                        // The helper died early: its error (or EOF) comes over the sync pipe.
                    }
                    finally
                    {
                        Libc.close(instrFd);
                    }
                },
                CancellationToken.None);

            int? pid = null;
            var ready = false;
            string? error = null;
            using (ct.Register(() =>
            {
                Libc.kill(helperPid, Libc.SIGKILL);
                if (pid is { } p)
                {
                    Libc.kill(p, Libc.SIGKILL);
                }
            }))
            {
                while (!(ready && pid != null))
                {
                    var line = await sync.ReadLineAsync();
                    if (line == null)
                    {
                        break;
                    }

                    if (line.StartsWith("pid ", StringComparison.Ordinal) && int.TryParse(line.AsSpan(4), NumberStyles.None, CultureInfo.InvariantCulture, out var p))
                    {
                        pid = p;
                    }
                    else if (line == "ready")
                    {
                        ready = true;
                    }
                    else if (line.StartsWith("error ", StringComparison.Ordinal))
                    {
                        error ??= line[6..];
                    }
                    else
                    {
                        error ??= $"unexpected message from the container helper: {line}";
                    }
                }
            }

            if (error != null || !ready || pid == null)
            {
                if (pid is { } dead)
                {
                    Libc.kill(dead, Libc.SIGKILL);
                    await reaper.WaitForExitAsync(dead, mark);
                }

                var helperStatus = await helperExit;
                sync.Dispose();
                ct.ThrowIfCancellationRequested();
                throw AgentException.FailedPrecondition(error ?? $"the container helper exited with status {helperStatus.ExitStatus} before the process was ready");
            }

            var session = new HelperSession(pid.Value, reaper.WaitForExitAsync(pid.Value, mark), sync, startWrite);
            startWrite = -1;
            return session;
        }
        finally
        {
            Libc.CloseQuietly(ref instrRead);
            Libc.CloseQuietly(ref instrWrite);
            Libc.CloseQuietly(ref syncRead);
            Libc.CloseQuietly(ref syncWrite);
            Libc.CloseQuietly(ref startRead);
            Libc.CloseQuietly(ref startWrite);
        }
    }

    /// <summary>Lets the process exec; returns once it has (the sync pipe closes on exec).</summary>
    /// <exception cref="AgentException">FailedPrecondition when exec failed (e.g. "exec: \"foo\": ...").</exception>
    public async Task StartAsync()
    {
        if (_startWrite < 0)
        {
            throw AgentException.FailedPrecondition("the process was already started");
        }

        try
        {
            Libc.WriteAll(_startWrite, "s"u8);
        }
        catch (NativeIOException)
        {
            // The process is gone: Wait reports how it ended.
        }
        finally
        {
            Libc.CloseQuietly(ref _startWrite);
        }

        string? error = null;
        while (await _sync.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("error ", StringComparison.Ordinal))
            {
                error ??= line[6..];
            }
        }

        _sync.Dispose();
        if (error != null)
        {
            throw AgentException.FailedPrecondition(error);
        }
    }

    public void Dispose()
    {
        Libc.CloseQuietly(ref _startWrite);
        _sync.Dispose();
    }

    /// <summary>Lines from the sync pipe; blocking reads run on the thread pool.</summary>
    private sealed class SyncReader : IDisposable
    {
        private readonly SafeFd _fd;
        private readonly byte[] _buffer = new byte[8192];
        private int _start;
        private int _end;
        private bool _eof;

        public SyncReader(int fd) => _fd = new SafeFd(fd);

        public Task<string?> ReadLineAsync() => Task.Run(ReadLine);

        public void Dispose() => _fd.Dispose();

        private string? ReadLine()
        {
            while (true)
            {
                var newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (newline >= 0)
                {
                    var line = Encoding.UTF8.GetString(_buffer, _start, newline - _start);
                    _start = newline + 1;
                    return line;
                }

                if (_eof)
                {
                    if (_start == _end)
                    {
                        return null;
                    }

                    var rest = Encoding.UTF8.GetString(_buffer, _start, _end - _start);
                    _start = _end;
                    return rest;
                }

                if (_start > 0)
                {
                    Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                    _end -= _start;
                    _start = 0;
                }

                if (_end == _buffer.Length)
                {
                    // An overlong line: hand it out in pieces rather than stall.
                    var piece = Encoding.UTF8.GetString(_buffer, 0, _end);
                    _start = _end = 0;
                    return piece;
                }

                var n = 0;
                if (!_fd.TryUse(fd => n = Libc.Read(fd, _buffer.AsSpan(_end))))
                {
                    _eof = true;
                    continue;
                }

                if (n <= 0)
                {
                    _eof = true;
                }
                else
                {
                    _end += n;
                }
            }
        }
    }
}
