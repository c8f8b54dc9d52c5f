using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace ShimV2.Netlink;

/// <summary>
/// Runs work inside a network namespace. setns(CLONE_NEWNET) changes only the calling thread, so the work runs on
/// a thread of its own that joins the namespace and ends with it: no pooled thread is ever left in another
/// namespace. Sockets opened there (netlink included) and processes started from there belong to that namespace.
/// </summary>
public static partial class NetworkNamespace
{
    private const int CLONE_NEWNET = 0x40000000;
    private const int O_RDONLY_CLOEXEC = 0x80000;

    public static T Run<T>(string path, Func<T> work)
    {
        T result = default!;
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Enter(path);
                result = work();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        { IsBackground = true, Name = "netns" };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }

    public static void Run(string path, Action work) => Run(path, () =>
    {
        work();
        return true;
    });

    private static void Enter(string path)
    {
        var fd = Open(path, O_RDONLY_CLOEXEC);
        if (fd < 0)
        {
            throw new NetlinkException($"open network namespace {path}", Marshal.GetLastPInvokeError());
        }

        try
        {
            if (SetNs(fd, CLONE_NEWNET) < 0)
            {
                throw new NetlinkException($"join network namespace {path}", Marshal.GetLastPInvokeError());
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(int fd, int type);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
