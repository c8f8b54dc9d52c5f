namespace ShimV2.Shim.Stdio;

/// <summary>The FIFO paths containerd gave for a process; empty means "not used".</summary>
public sealed record StdioConfig(string Stdin, string Stdout, string Stderr, bool Terminal)
{
    public bool HasStdin => Stdin.Length > 0;

    public bool HasStdout => Stdout.Length > 0;

    /// <summary>With a terminal the client never opens the stderr FIFO: pty output goes to stdout only.</summary>
    public bool HasStderr => Stderr.Length > 0 && !Terminal;
}
