namespace ShimV2.GuestAgent.Helper;

/// <summary>The namespace a sysctl lives in; the helper writes it after joining or creating that namespace.</summary>
internal enum SysctlNamespace
{
    Ipc,
    Network,
    Uts,
}

/// <summary>
/// runc's rule for the spec's sysctls: any key is written as given, as long as it belongs to a namespace the
/// container has (its own or one it joins, such as the pod's IPC namespace). Written from inside the container's
/// namespaces, an IPC or network sysctl of the pod's sandbox lands in the namespaces every container of the pod shares.
/// </summary>
internal static class SysctlRules
{
    private static readonly HashSet<string> IpcKeys = new(StringComparer.Ordinal)
    {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
        "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    };

    /// <summary>
    /// Which namespace <paramref name="key"/> belongs to, given the namespace types in the spec (with or without a
    /// path); throws InvalidArgument with runc's reason when it belongs to none the container has.
    /// </summary>
    public static SysctlNamespace Place(string key, IReadOnlySet<string> namespaceTypes)
    {
        if (key.Length == 0 || key.Contains('/', StringComparison.Ordinal) || key.Contains("..", StringComparison.Ordinal)
            || key.StartsWith('.') || key.EndsWith('.'))
        {
            throw AgentException.InvalidArgument($"invalid sysctl \"{key}\"");
        }

        if (IpcKeys.Contains(key) || key.StartsWith("fs.mqueue.", StringComparison.Ordinal))
        {
            return namespaceTypes.Contains("ipc")
                ? SysctlNamespace.Ipc
                : throw AgentException.InvalidArgument($"sysctl \"{key}\" is not allowed in the host's (the VM's) IPC namespace");
        }

        if (key.StartsWith("net.", StringComparison.Ordinal))
        {
            return namespaceTypes.Contains("network")
                ? SysctlNamespace.Network
                : throw AgentException.InvalidArgument($"sysctl \"{key}\" is not allowed in the host network namespace");
        }

        if (namespaceTypes.Contains("uts"))
        {
            switch (key)
            {
                case "kernel.domainname":
                    return SysctlNamespace.Uts;
                case "kernel.hostname":
                    throw AgentException.InvalidArgument($"sysctl \"{key}\" is not allowed as it conflicts with the OCI \"hostname\" field");
            }
        }

        throw AgentException.InvalidArgument($"sysctl \"{key}\" is not in a separate kernel namespace");
    }
}
