using System.Runtime.InteropServices;
using System.Text;

namespace ShimV2.GuestAgent.Native;

/// <summary>
/// posix_spawn with an explicit fd map: the child gets exactly the mapped fds (everything the agent opens is
/// close-on-exec), default signal dispositions (the runtime ignores SIGPIPE, which exec would inherit) and an
/// empty signal mask. The reaper is told a child exists; the caller registers the pid with it.
/// </summary>
internal static unsafe class Spawner
{
    // glibc: posix_spawn_file_actions_t is 80 bytes, posix_spawnattr_t 336, sigset_t 128; leave room.
    private const int OpaqueSize = 1024;

    /// <summary>Starts path with argv/envp; fdMap maps agent fds to child fd numbers.</summary>
    /// <returns>The child's pid.</returns>
    public static int Spawn(string path, IReadOnlyList<string> argv, IReadOnlyList<string> envp, IReadOnlyList<(int Source, int Target)> fdMap)
    {
        var actions = (IntPtr)NativeMemory.AllocZeroed(OpaqueSize);
        var attr = (IntPtr)NativeMemory.AllocZeroed(OpaqueSize);
        var sigset = (IntPtr)NativeMemory.AllocZeroed(OpaqueSize);
        var strings = new List<IntPtr>();
        try
        {
            Check(Libc.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
            Check(Libc.posix_spawnattr_init(attr), "posix_spawnattr_init");

            // Two phases, so no source is clobbered by an earlier target: sources -> fds above every source,
            // then those -> targets (dup2 clears close-on-exec on the target).
            var high = Math.Max(16, fdMap.Count == 0 ? 0 : fdMap.Max(m => Math.Max(m.Source, m.Target)) + 1);
            for (var i = 0; i < fdMap.Count; i++)
            {
                Check(Libc.posix_spawn_file_actions_adddup2(actions, fdMap[i].Source, high + i), "posix_spawn_file_actions_adddup2");
            }

            for (var i = 0; i < fdMap.Count; i++)
            {
                Check(Libc.posix_spawn_file_actions_adddup2(actions, high + i, fdMap[i].Target), "posix_spawn_file_actions_adddup2");
            }

            Libc.sigemptyset(sigset);
            Check(Libc.posix_spawnattr_setsigmask(attr, sigset), "posix_spawnattr_setsigmask");
            Libc.sigfillset(sigset);
            Libc.sigdelset(sigset, Libc.SIGKILL);
            Libc.sigdelset(sigset, Libc.SIGSTOP);
            Check(Libc.posix_spawnattr_setsigdefault(attr, sigset), "posix_spawnattr_setsigdefault");
            Check(Libc.posix_spawnattr_setflags(attr, Libc.POSIX_SPAWN_SETSIGDEF | Libc.POSIX_SPAWN_SETSIGMASK), "posix_spawnattr_setflags");

            var pathPtr = Utf8(path, strings);
            var argvPtr = (byte**)NativeMemory.AllocZeroed((nuint)(sizeof(byte*) * (argv.Count + 1)));
            strings.Add((IntPtr)argvPtr);
            for (var i = 0; i < argv.Count; i++)
            {
                argvPtr[i] = Utf8(argv[i], strings);
            }

            var envPtr = (byte**)NativeMemory.AllocZeroed((nuint)(sizeof(byte*) * (envp.Count + 1)));
            strings.Add((IntPtr)envPtr);
            for (var i = 0; i < envp.Count; i++)
            {
                envPtr[i] = Utf8(envp[i], strings);
            }

            var rc = Libc.posix_spawn(out var pid, pathPtr, actions, attr, argvPtr, envPtr);
            if (rc != 0)
            {
                throw new NativeIOException($"spawn {path}", rc);
            }

            ProcessReaper.Shared.ChildSpawned();
            return pid;
        }
        finally
        {
            Libc.posix_spawn_file_actions_destroy(actions);
            Libc.posix_spawnattr_destroy(attr);
            NativeMemory.Free((void*)actions);
            NativeMemory.Free((void*)attr);
            NativeMemory.Free((void*)sigset);
            foreach (var p in strings)
            {
                NativeMemory.Free((void*)p);
            }
        }
    }

    private static byte* Utf8(string s, List<IntPtr> owned)
    {
        var count = Encoding.UTF8.GetByteCount(s);
        var p = (byte*)NativeMemory.Alloc((nuint)count + 1);
        owned.Add((IntPtr)p);
        Encoding.UTF8.GetBytes(s, new Span<byte>(p, count));
        p[count] = 0;
        return p;
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0)
        {
            throw new NativeIOException(what, rc);
        }
    }
}
