namespace ShimV2.Hypervisor;

/// <summary>A hypervisor failure. <see cref="Exception.Message"/> is one user-facing line.</summary>
public class HypervisorException : Exception
{
    public HypervisorException()
        : base("hypervisor error")
    {
    }

    public HypervisorException(string message)
        : base(OneLine(message))
    {
    }

    public HypervisorException(string message, Exception? innerException)
        : base(OneLine(message), innerException)
    {
    }

    /// <summary>Folds line breaks so a message always fits on one log or error line.</summary>
    internal static string OneLine(string message)
    {
        if (message.AsSpan().IndexOfAny('\r', '\n') < 0)
        {
            return message;
        }

        var parts = message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return string.Join(" / ", parts);
    }
}

/// <summary>The hypervisor configuration is unreadable or invalid; the message names the file and the setting.</summary>
public sealed class HypervisorConfigException : HypervisorException
{
    public HypervisorConfigException()
    {
    }

    public HypervisorConfigException(string message)
        : base(message)
    {
    }

    public HypervisorConfigException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
