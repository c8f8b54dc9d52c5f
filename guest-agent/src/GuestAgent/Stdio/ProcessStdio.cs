using System.Text;
using ShimV2.GuestAgent.Native;
using ShimV2.GuestAgent.Oci;

namespace ShimV2.GuestAgent.Stdio;

/// <summary>
/// A process's stdio as the agent holds it: pipes for the requested streams (/dev/null for the others), or a
/// pty whose slave becomes the controlling terminal and whose master carries stdin and stdout.
/// </summary>
internal sealed class ProcessStdio : IDisposable
{
    public const string DefaultPtmx = "/dev/ptmx";

    private int _childStdin = -1;
    private int _childStdout = -1;
    private int _childStderr = -1;
    private SafeFd? _ptyMaster;

    private ProcessStdio(bool terminal)
    {
        Terminal = terminal;
    }

    public bool Terminal { get; }

    /// <summary>The pty slave's path in the guest (terminal only), e.g. /dev/pts/3.</summary>
    public string? ConsolePath { get; private set; }

    public StdinWriter? Stdin { get; private set; }

    public OutputStream? Stdout { get; private set; }

    public OutputStream? Stderr { get; private set; }

    /// <summary>The fds to give the process as 0, 1, 2 (valid until <see cref="CloseChildEnds"/>).</summary>
    public (int Stdin, int Stdout, int Stderr) ChildFds => (_childStdin, _childStdout, _childStderr);

    /// <summary>Completes when every output stream stopped reading.</summary>
    public Task Drained => Task.WhenAll(new[] { Stdout?.Drained, Stderr?.Drained }.OfType<Task>());

    /// <param name="ptmx">
    /// Where to allocate a terminal: the guest's /dev/ptmx (default; the slave gets a path, bound as the container's
    /// /dev/console), or a container's own (/proc/&lt;init&gt;/root/dev/ptmx) so an exec's tty is one of the
    /// container's /dev/pts.
    /// </param>
    public static unsafe ProcessStdio Create(
        bool terminal, bool stdin, bool stdout, bool stderr, OciBox? consoleSize, int capacity = OutputStream.DefaultCapacity, string ptmx = DefaultPtmx)
    {
        var stdio = new ProcessStdio(terminal);
        try
        {
            if (terminal)
            {
                stdio.CreatePty(ptmx, stdin, consoleSize, capacity);
                return stdio;
            }

            if (stdin)
            {
                var (r, w) = Libc.Pipe();
                PipeFds.TryEnlarge(w);
                stdio._childStdin = r;
                stdio.Stdin = new StdinWriter(new SafeFd(w), closeOnClose: true);
            }
            else
            {
                stdio._childStdin = OpenNull();
            }

            if (stdout)
            {
                var (r, w) = Libc.Pipe();
                PipeFds.TryEnlarge(r);
                stdio._childStdout = w;
                stdio.Stdout = new OutputStream(new SafeFd(r), "stdout", capacity);
            }
            else
            {
                stdio._childStdout = OpenNull();
            }

            if (stderr)
            {
                var (r, w) = Libc.Pipe();
                PipeFds.TryEnlarge(r);
                stdio._childStderr = w;
                stdio.Stderr = new OutputStream(new SafeFd(r), "stderr", capacity);
            }
            else
            {
                stdio._childStderr = OpenNull();
            }

            return stdio;
        }
        catch
        {
            stdio.Dispose();
            throw;
        }
    }

    /// <summary>Starts copying output; call once the process is running.</summary>
    public void StartPumps()
    {
        Stdout?.Start();
        Stderr?.Start();
    }

    /// <summary>Closes the agent's copies of the child's ends (after the spawn), so end of stream can happen.</summary>
    public void CloseChildEnds()
    {
        // With a pty, the three are the same fd.
        var fds = new HashSet<int> { _childStdin, _childStdout, _childStderr };
        foreach (var fd in fds)
        {
            if (fd >= 0)
            {
                Libc.close(fd);
            }
        }

        _childStdin = _childStdout = _childStderr = -1;
    }

    public void ProcessExited()
    {
        Stdout?.ProcessExited();
        Stderr?.ProcessExited();
    }

    public unsafe void Resize(uint rows, uint cols)
    {
        if (_ptyMaster == null)
        {
            throw AgentException.FailedPrecondition("the process has no terminal");
        }

        var size = new Libc.WinSize { Rows = (ushort)Math.Min(rows, ushort.MaxValue), Cols = (ushort)Math.Min(cols, ushort.MaxValue) };
        var ok = _ptyMaster.TryUse(fd =>
        {
            var copy = size;
            if (Libc.ioctl(fd, Libc.TIOCSWINSZ, &copy) != 0)
            {
                throw Libc.NativeError("resize terminal");
            }
        });
        if (!ok)
        {
            throw AgentException.FailedPrecondition("the terminal is closed");
        }
    }

    public void Dispose()
    {
        CloseChildEnds();
        Stdin?.Dispose();
        Stdout?.Dispose();
        Stderr?.Dispose();
        _ptyMaster?.Dispose();
    }

    private static int OpenNull()
    {
        var fd = Libc.open("/dev/null", Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        return fd >= 0 ? fd : throw Libc.NativeError("open /dev/null");
    }

    private unsafe void CreatePty(string ptmx, bool stdin, OciBox? consoleSize, int capacity)
    {
        var master = Libc.open(ptmx, Libc.O_RDWR | Libc.O_NOCTTY | Libc.O_CLOEXEC, 0);
        if (master < 0)
        {
            throw new NativeIOException($"open {ptmx}", Libc.Errno);
        }

        _ptyMaster = new SafeFd(master);
        if (Libc.unlockpt(master) != 0)
        {
            throw Libc.NativeError("unlock pty");
        }

        // TIOCGPTPEER opens the slave without a path: right whichever devpts instance the master came from.
        var slave = Libc.ioctl(master, Libc.TIOCGPTPEER, (void*)(Libc.O_RDWR | Libc.O_NOCTTY | Libc.O_CLOEXEC));
        if (ptmx == DefaultPtmx)
        {
            var name = stackalloc byte[256];
            var rc = Libc.ptsname_r(master, name, 256);
            if (rc != 0)
            {
                Libc.CloseQuietly(ref slave);
                throw Libc.NativeError("ptsname", rc);
            }

            var raw = new ReadOnlySpan<byte>(name, 256);
            ConsolePath = Encoding.UTF8.GetString(raw[..Math.Max(0, raw.IndexOf((byte)0))]);
            if (slave < 0)
            {
                slave = Libc.open(ConsolePath, Libc.O_RDWR | Libc.O_NOCTTY | Libc.O_CLOEXEC, 0);
            }
        }

        if (slave < 0)
        {
            throw Libc.NativeError($"open the slave of a pty from {ptmx}");
        }

        _childStdin = _childStdout = _childStderr = slave;
        if (consoleSize is { Height: > 0, Width: > 0 })
        {
            Resize(consoleSize.Height, consoleSize.Width);
        }

        // The master is read by the stdout pump and written by stdin; it is closed when both are disposed.
        Stdout = new OutputStream(_ptyMaster, "tty", capacity);
        if (stdin)
        {
            Stdin = new StdinWriter(_ptyMaster, closeOnClose: false);
        }
    }
}
