namespace ShimV2.Hypervisor;

/// <summary>QEMU answered a command with an error.</summary>
public sealed class QmpException : HypervisorException
{
    public QmpException()
    {
    }

    public QmpException(string message)
        : base(message)
    {
    }

    public QmpException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    public QmpException(string command, string errorClass, string description)
        : base($"qmp {command} failed: {description} ({errorClass})")
    {
        Command = command;
        ErrorClass = errorClass;
        Description = description;
    }

    public string Command { get; } = "";

    /// <summary>QEMU's error class, e.g. GenericError, CommandNotFound, DeviceNotFound.</summary>
    public string ErrorClass { get; } = "";

    public string Description { get; } = "";
}

/// <summary>The QMP connection closed (QEMU exited or the socket broke) before a reply came.</summary>
public sealed class QmpConnectionClosedException : HypervisorException
{
    public QmpConnectionClosedException()
        : base("qmp connection closed")
    {
    }

    public QmpConnectionClosedException(string message)
        : base(message)
    {
    }

    public QmpConnectionClosedException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
