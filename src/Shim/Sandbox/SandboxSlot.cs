using Microsoft.Extensions.Logging;

namespace ShimV2.Shim.Sandbox;

/// <summary>
/// The shim's one pod VM and its state (none → booting → ready → stopping → none; ready → dead when QEMU exits).
/// Fed by QEMU's exit: after the VM dies, calls that need the guest fail at once with a clear error instead of
/// waiting on a dead agent. Launch and stop are serialized by the caller's lifecycle lock.
/// </summary>
public sealed partial class SandboxSlot(ILogger logger)
{
    private readonly Lock _gate = new();
    private SandboxState _state = SandboxState.None;
    private ISandbox? _sandbox;
    private string? _deathReason;

    public SandboxState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    /// <summary>The VM, whatever its state (Delete still needs a dead one's paths); null when none.</summary>
    public ISandbox? Current => _sandbox;

    /// <summary>Launches the VM; on failure the slot is empty again.</summary>
    public async Task<ISandbox> LaunchAsync(Func<Task<ISandbox>> launch)
    {
        Fire(SandboxEvent.Launch);
        ISandbox sandbox;
        try
        {
            sandbox = await launch();
        }
        catch
        {
            Fire(SandboxEvent.BootFailed);
            throw;
        }

        lock (_gate)
        {
            _sandbox = sandbox;
            _state = SandboxStateMachine.Next(_state, SandboxEvent.Booted);
        }

        _ = WatchAsync(sandbox);
        return sandbox;
    }

    /// <summary>The ready VM, for <paramref name="doing"/>; a dead or absent one is an error saying so.</summary>
    public ISandbox RequireReady(string doing)
    {
        lock (_gate)
        {
            return _state switch
            {
                SandboxState.Ready => _sandbox!,
                SandboxState.Dead => throw Errors.Unavailable($"{doing}: the pod's VM has exited ({_deathReason})"),
                SandboxState.Stopping => throw Errors.Unavailable($"{doing}: the pod's VM is stopping"),
                _ => throw Errors.FailedPrecondition($"{doing}: the sandbox VM is not running"),
            };
        }
    }

    /// <summary>Stops the VM and removes its host state; idempotent.</summary>
    public async Task StopAsync()
    {
        ISandbox? sandbox;
        lock (_gate)
        {
            _state = SandboxStateMachine.Next(_state, SandboxEvent.Stop);
            sandbox = _sandbox;
        }

        if (sandbox is null)
        {
            return;
        }

        try
        {
            await sandbox.StopAsync(CancellationToken.None);
        }
        finally
        {
            lock (_gate)
            {
                _sandbox = null;
                _state = SandboxStateMachine.Next(_state, SandboxEvent.Stopped);
            }
        }
    }

    private async Task WatchAsync(ISandbox sandbox)
    {
        await sandbox.Exited.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        lock (_gate)
        {
            if (!ReferenceEquals(_sandbox, sandbox) && _state != SandboxState.Stopping)
            {
                return;
            }

            _deathReason = sandbox.ExitReason ?? "QEMU exited";
            var before = _state;
            _state = SandboxStateMachine.Next(_state, SandboxEvent.VmExited);
            if (before == SandboxState.Ready)
            {
                LogVmGone(logger, sandbox.Id, _deathReason);
            }
        }
    }

    private void Fire(SandboxEvent evt)
    {
        lock (_gate)
        {
            _state = SandboxStateMachine.Next(_state, evt);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "sandbox {SandboxId}: the VM exited: {Reason}")]
    private static partial void LogVmGone(ILogger logger, string sandboxId, string reason);
}
