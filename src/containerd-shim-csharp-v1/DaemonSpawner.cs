using System.Runtime.InteropServices;

namespace ShimV2.Cli;

/// <summary>
/// Starts the long-lived shim daemon with posix_spawn: its own session, stdio on /dev/null (containerd reads
/// start's combined output until every holder closes it), and the listening socket as fd 3.
/// </summary>
internal static unsafe partial class DaemonSpawner
{
    public const int ListenFd = 3;

    private const short POSIX_SPAWN_SETSIGMASK = 0x08;
    private const short POSIX_SPAWN_SETSIGDEF = 0x04;
    private const short POSIX_SPAWN_SETSID = 0x80;
    private const int O_RDONLY = 0;
    private const int O_WRONLY = 1;

    public static int Spawn(string executable, IReadOnlyList<string> args, IReadOnlyDictionary<string, string> environment, int listenFd)
    {
        var actions = stackalloc byte[256];
        var attr = stackalloc byte[1024];
        var sigset = stackalloc byte[128];
        Check(posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
        Check(posix_spawnattr_init(attr), "posix_spawnattr_init");
        var allocations = new List<nint>();
        try
        {
            Check(posix_spawn_file_actions_addopen(actions, 0, "/dev/null", O_RDONLY, 0), "addopen stdin");
            Check(posix_spawn_file_actions_addopen(actions, 1, "/dev/null", O_WRONLY, 0), "addopen stdout");
            Check(posix_spawn_file_actions_addopen(actions, 2, "/dev/null", O_WRONLY, 0), "addopen stderr");
            Check(posix_spawn_file_actions_adddup2(actions, listenFd, ListenFd), "adddup2");

            // A clean signal state: .NET blocks and ignores some signals; the daemon starts from defaults.
            Check(sigemptyset(sigset), "sigemptyset");
            Check(posix_spawnattr_setsigmask(attr, sigset), "setsigmask");
            Check(sigfillset(sigset), "sigfillset");
            Check(posix_spawnattr_setsigdefault(attr, sigset), "setsigdefault");
            Check(posix_spawnattr_setflags(attr, (short)(POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)), "setflags");

            var argv = ToNative([executable, .. args], allocations);
            var envp = ToNative(environment.Select(kv => $"{kv.Key}={kv.Value}").ToList(), allocations);
            int pid;
            var rc = posix_spawn(&pid, executable, actions, attr, argv, envp);
            if (rc != 0)
            {
                throw new IOException($"cannot start shim daemon {executable}: {Marshal.GetPInvokeErrorMessage(rc)}");
            }

            return pid;
        }
        finally
        {
            foreach (var p in allocations)
            {
                Marshal.FreeHGlobal(p);
            }

            _ = posix_spawn_file_actions_destroy(actions);
            _ = posix_spawnattr_destroy(attr);
        }
    }

    private static nint* ToNative(List<string> strings, List<nint> allocations)
    {
        var array = (nint*)Marshal.AllocHGlobal((strings.Count + 1) * sizeof(nint));
        allocations.Add((nint)array);
        for (var i = 0; i < strings.Count; i++)
        {
            array[i] = Marshal.StringToCoTaskMemUTF8(strings[i]);
            allocations.Add(array[i]);
        }

        array[strings.Count] = 0;
        return array;
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0)
        {
            throw new IOException($"{what}: {Marshal.GetPInvokeErrorMessage(rc)}");
        }
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int posix_spawn(int* pid, string path, byte* fileActions, byte* attr, nint* argv, nint* envp);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_init(byte* actions);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_destroy(byte* actions);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int posix_spawn_file_actions_addopen(byte* actions, int fd, string path, int flags, uint mode);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_adddup2(byte* actions, int fd, int newFd);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_init(byte* attr);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_destroy(byte* attr);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setflags(byte* attr, short flags);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setsigmask(byte* attr, byte* sigset);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setsigdefault(byte* attr, byte* sigset);

    [LibraryImport("libc")]
    private static partial int sigemptyset(byte* set);

    [LibraryImport("libc")]
    private static partial int sigfillset(byte* set);
}
