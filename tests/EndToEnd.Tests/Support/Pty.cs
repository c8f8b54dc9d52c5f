using System.Runtime.InteropServices;
using System.Text;

namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>
/// A pseudo-terminal for `ctr ... -t`: the command runs in its own session with the pty's slave as stdin, stdout,
/// stderr and controlling terminal (via `setsid -w -c`), so `ctr` sees a real console; the test reads what it
/// prints from the master and resizes the terminal (TIOCSWINSZ, which sends ctr a SIGWINCH).
/// </summary>
public sealed partial class Pty : IAsyncDisposable
{
    private const uint TIOCSWINSZ = 0x5414;
    private readonly int _master;
    private readonly int _slave;
    private readonly StringBuilder _output = new();
    private readonly Thread _reader;
    private HostProcess? _process;

    private Pty(int master, int slave, string slavePath)
    {
        _master = master;
        _slave = slave;
        SlavePath = slavePath;
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "pty reader" };
        _reader.Start();
    }

    public string SlavePath { get; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static Pty Open(ushort rows, ushort cols)
    {
        var ws = new WinSize { Rows = rows, Cols = cols };
        if (OpenPty(out var master, out var slave, IntPtr.Zero, IntPtr.Zero, ref ws) != 0)
        {
            throw new IOException($"openpty failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        var path = new FileInfo($"/proc/self/fd/{slave}").LinkTarget ?? throw new IOException("cannot name the pty slave");
        return new Pty(master, slave, path);
    }

    /// <summary>Starts FILE ARGS... on the pty as a session leader with the pty as controlling terminal. Its stdio is
    /// one read-write open of the pty, as a login terminal's is: ctr reads keys from whichever of fds 2, 1, 0 is a
    /// console first (containerd/console), so a write-only stderr would leave it unable to read any.</summary>
    public HostProcess Start(string file, IEnumerable<string> args, Action<string>? log)
    {
        _process = HostProcess.Start(
            "sh",
            new[] { "-c", "exec setsid -w -c \"$@\" <>\"$PTY\" >&0 2>&0", "sh", file }.Concat(args),
            new ProcessOptions { Environment = new Dictionary<string, string> { ["PTY"] = SlavePath } },
            log);
        return _process;
    }

    /// <summary>Types TEXT at the terminal (control characters included: "\x03" is Ctrl-C).</summary>
    public void Type(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var written = 0;
        while (written < bytes.Length)
        {
            var n = (int)Write(_master, bytes.AsSpan(written), (nuint)(bytes.Length - written));
            if (n < 0)
            {
                throw new IOException($"write to the pty failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }

            written += n;
        }
    }

    public void Resize(ushort rows, ushort cols)
    {
        var ws = new WinSize { Rows = rows, Cols = cols };
        if (Ioctl(_master, TIOCSWINSZ, ref ws) != 0)
        {
            throw new IOException($"TIOCSWINSZ failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            await _process.DisposeAsync();
        }

        // Closing the slave makes the master's read fail (EIO): the reader thread ends; then close the master.
        _ = Close(_slave);
        _reader.Join(TimeSpan.FromSeconds(5));
        _ = Close(_master);
    }

    private void ReadLoop()
    {
        var buffer = new byte[4096];
        while (true)
        {
            var n = (int)Read(_master, buffer, (nuint)buffer.Length);
            if (n <= 0)
            {
                // EIO once the last slave fd is closed; EINTR is not expected on a thread without signal handlers.
                return;
            }

            lock (_output)
            {
                _output.Append(Encoding.UTF8.GetString(buffer, 0, n));
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct WinSize
    {
        public ushort Rows;
        public ushort Cols;
        public ushort XPixel;
        public ushort YPixel;
    }

    [LibraryImport("libc", EntryPoint = "openpty", SetLastError = true)]
    private static partial int OpenPty(out int master, out int slave, IntPtr name, IntPtr termios, ref WinSize winSize);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, nuint request, ref WinSize winSize);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint Read(int fd, [Out] byte[] buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, ReadOnlySpan<byte> buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
