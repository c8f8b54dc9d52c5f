namespace ShimV2.Cli.Check;

internal enum CheckStatus
{
    Ok,
    Warn,

    /// <summary>A pod could not start on this host with this config.</summary>
    Fail,
}

/// <summary>One line of `check`: "ok   qemu         /usr/bin/qemu-system-x86_64: QEMU emulator version 7.2.22".</summary>
internal sealed record CheckItem(string Name, CheckStatus Status, string Detail)
{
    public static CheckItem Ok(string name, string detail) => new(name, CheckStatus.Ok, detail);

    public static CheckItem Warn(string name, string detail) => new(name, CheckStatus.Warn, detail);

    public static CheckItem Fail(string name, string detail) => new(name, CheckStatus.Fail, detail);

    public override string ToString() => $"{Status.ToString().ToLowerInvariant(),-4} {Name,-12} {Detail.ReplaceLineEndings(" ")}";
}
