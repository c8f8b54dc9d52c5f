using ShimV2.GuestAgent.Native;

namespace ShimV2.GuestAgent.Stdio;

/// <summary>
/// Writes a process's stdin fully and in stream order; closing waits for pending writes. The host keeps several
/// writes in flight and the TTRPC server runs them concurrently, so each names its offset in the stream and waits
/// for the writes before it. A write that fails or is abandoned fails every later one: the stream has a hole.
/// </summary>
internal sealed class StdinWriter : IDisposable
{
    private readonly SafeFd _fd;
    private readonly bool _closeOnClose;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Lock _order = new();
    private readonly Dictionary<long, TaskCompletionSource> _turns = [];
    private long _next;
    private string? _broken;
    private bool _closed;

    /// <param name="fd">The pipe's write end or the pty master.</param>
    /// <param name="closeOnClose">Close the fd on <see cref="CloseAsync"/> (a pipe); a pty master stays open for output.</param>
    public StdinWriter(SafeFd fd, bool closeOnClose)
    {
        _fd = fd;
        _closeOnClose = closeOnClose;
    }

    /// <summary>Writes data once everything before <paramref name="offset"/> was written; returns its length.</summary>
    /// <exception cref="AgentException">
    /// FailedPrecondition: stdin is closed, the process no longer reads it, or an earlier write failed;
    /// InvalidArgument: the offset was written already.
    /// </exception>
    public async Task<int> WriteAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken ct)
    {
        try
        {
            await TurnAsync(offset).WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            Break("stdin: an earlier write was abandoned");
            throw;
        }

        var written = false;
        try
        {
            await _gate.WaitAsync(ct);
            try
            {
                if (_closed)
                {
                    throw AgentException.FailedPrecondition("stdin is closed");
                }

                if (!data.IsEmpty)
                {
                    // A blocking write on a pool thread: the pipe may be full until the process reads.
                    await Task.Run(
                        () =>
                        {
                            var ok = _fd.TryUse(fd => Libc.WriteAll(fd, data.Span));
                            if (!ok)
                            {
                                throw AgentException.FailedPrecondition("stdin is closed");
                            }
                        },
                        CancellationToken.None);
                }

                written = true;
                return data.Length;
            }
            catch (NativeIOException e) when (e.Errno is Libc.EPIPE or Libc.EIO)
            {
                throw AgentException.FailedPrecondition("stdin: the process no longer reads it (broken pipe)");
            }
            finally
            {
                _gate.Release();
            }
        }
        catch (AgentException e)
        {
            Break(e.Message);
            throw;
        }
        catch (OperationCanceledException)
        {
            Break("stdin: an earlier write was abandoned");
            throw;
        }
        finally
        {
            if (written)
            {
                Advance(offset + data.Length);
            }
        }
    }

    public async Task CloseAsync()
    {
        await _gate.WaitAsync();
        try
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            if (_closeOnClose)
            {
                _fd.Dispose();
            }
        }
        finally
        {
            _gate.Release();
        }

        Break("stdin is closed");
    }

    public void Dispose()
    {
        _closed = true;
        Break("stdin is closed");
        if (_closeOnClose)
        {
            _fd.Dispose();
        }
    }

    private Task TurnAsync(long offset)
    {
        lock (_order)
        {
            if (_broken is not null)
            {
                throw AgentException.FailedPrecondition(_broken);
            }

            if (offset == _next)
            {
                return Task.CompletedTask;
            }

            if (offset < _next || _turns.ContainsKey(offset))
            {
                throw AgentException.InvalidArgument($"stdin offset {offset} was written already (next is {_next})");
            }

            var turn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _turns[offset] = turn;
            return turn.Task;
        }
    }

    private void Advance(long next)
    {
        lock (_order)
        {
            _next = next;
            if (_turns.Remove(next, out var turn))
            {
                turn.TrySetResult();
            }
        }
    }

    /// <summary>No later write can be delivered in order: every waiting one fails, and every one still to come.</summary>
    private void Break(string reason)
    {
        lock (_order)
        {
            _broken ??= reason;
            foreach (var turn in _turns.Values)
            {
                turn.TrySetException(AgentException.FailedPrecondition(_broken));
            }

            _turns.Clear();
        }
    }
}
