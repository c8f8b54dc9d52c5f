using Microsoft.Win32.SafeHandles;

namespace ShimV2.GuestAgent.Native;

/// <summary>An owned file descriptor: closed once, never while a reader or writer holds a reference.</summary>
internal sealed class SafeFd : SafeHandleMinusOneIsInvalid
{
    public SafeFd(int fd)
        : base(ownsHandle: true)
    {
        SetHandle(fd);
    }

    public int Fd => (int)handle;

    /// <summary>Runs action with the fd kept open for its duration; false if already closed.</summary>
    public bool TryUse(Action<int> action)
    {
        var added = false;
        try
        {
            DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            return false;
        }

        try
        {
            action((int)handle);
            return true;
        }
        finally
        {
            if (added)
            {
                DangerousRelease();
            }
        }
    }

    protected override bool ReleaseHandle() => Libc.close((int)handle) == 0;
}
