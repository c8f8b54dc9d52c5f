using Tmds.DBus.Protocol;

namespace ShimV2.Shim.Cgroups;

/// <summary>
/// What the shim asks systemd for a pod on the systemd cgroup driver: a transient scope, as runc makes one for a
/// container (StartTransientUnit, mode "replace"), holding the given pids, in the spec's slice, delegated (the
/// processes in it may manage their own sub-cgroups), with accounting on so the pod's usage is visible.
/// </summary>
public sealed record SystemdScopeRequest(string Unit, string Slice, string Description, IReadOnlyList<uint> Pids)
{
    public const string Mode = "replace";

    public static SystemdScopeRequest For(CgroupsPath path, string sandboxId, params IReadOnlyList<int> pids)
    {
        if (path.Driver != CgroupDriver.Systemd)
        {
            throw new ArgumentException($"{path} is not a systemd cgroups path", nameof(path));
        }

        return new SystemdScopeRequest(path.Unit!, path.Slice!, $"containerd-shim-csharp pod {sandboxId} (shim and VM)", pids.Select(p => (uint)p).ToList());
    }

    /// <summary>The unit's properties, in the a(sv) StartTransientUnit takes.</summary>
    public IReadOnlyList<KeyValuePair<string, VariantValue>> Properties() =>
    [
        new("Description", VariantValue.String(Description)),
        new("Slice", VariantValue.String(Slice)),
        new("Delegate", VariantValue.Bool(true)),
        new("PIDs", VariantValue.Array(Pids.ToArray())),
        // As runc: no implicit ordering against shutdown.target etc., which would stall a pod at system shutdown.
        new("DefaultDependencies", VariantValue.Bool(false)),
        new("MemoryAccounting", VariantValue.Bool(true)),
        new("CPUAccounting", VariantValue.Bool(true)),
        new("TasksAccounting", VariantValue.Bool(true)),
    ];
}

/// <summary>Talks to systemd's manager; a seam so the scope logic is testable without systemd.</summary>
public interface ISystemdManager
{
    /// <summary>Starts the transient unit and waits for its start job to finish.</summary>
    /// <exception cref="HostCgroupException">systemd refused or the job failed.</exception>
    Task StartTransientUnitAsync(SystemdScopeRequest request, CancellationToken cancellationToken);

    /// <summary>Stops the unit; a unit already gone is not an error.</summary>
    Task StopUnitAsync(string unit, CancellationToken cancellationToken);
}

/// <summary>systemd's org.freedesktop.systemd1.Manager on the system bus, through Tmds.DBus.Protocol.</summary>
public sealed class SystemdDbusManager(string? address = null) : ISystemdManager
{
    /// <summary>Where a systemd-booted host says so (sd_booted(3)).</summary>
    public const string BootedMarker = "/run/systemd/system";

    private const string Service = "org.freedesktop.systemd1";
    private const string ObjectPath = "/org/freedesktop/systemd1";
    private const string Interface = "org.freedesktop.systemd1.Manager";
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(30);

    public static bool SystemdRunning => Directory.Exists(BootedMarker);

    public async Task StartTransientUnitAsync(SystemdScopeRequest request, CancellationToken cancellationToken)
    {
        using var connection = await ConnectAsync();
        var results = new System.Collections.Concurrent.ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        using var removed = new SemaphoreSlim(0);

        // Subscribed before the call: the job may finish before its path is returned.
        using var watch = await connection.WatchSignalAsync(
            Service, ObjectPath, Interface, "JobRemoved",
            static (Message message, object? _) =>
            {
                var reader = message.GetBodyReader();
                _ = reader.ReadUInt32();
                var job = reader.ReadObjectPathAsString();
                _ = reader.ReadString();
                return (Job: job, Result: reader.ReadString());
            },
            (Notification<(string Job, string Result)> n) =>
            {
                if (n.HasValue)
                {
                    results[n.Value.Job] = n.Value.Result;
                    removed.Release();
                }
            },
            ObserverFlags.None,
            false,
            null);

        string job;
        try
        {
            job = await connection.CallMethodAsync(
                CreateStartTransientUnit(connection, request),
                static (Message message, object? _) => message.GetBodyReader().ReadObjectPathAsString(),
                null);
        }
        catch (DBusErrorReplyException e)
        {
            throw new HostCgroupException($"systemd refused the scope {request.Unit} in {request.Slice}: {e.ErrorName}: {e.ErrorMessage}");
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(JobTimeout);
        string? result;
        while (!results.TryGetValue(job, out result))
        {
            try
            {
                await removed.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new HostCgroupException($"systemd did not finish starting {request.Unit} within {JobTimeout.TotalSeconds:0} s");
            }
        }

        if (result != "done")
        {
            throw new HostCgroupException($"systemd could not start {request.Unit} in {request.Slice}: job {result}");
        }
    }

    public async Task StopUnitAsync(string unit, CancellationToken cancellationToken)
    {
        using var connection = await ConnectAsync();
        try
        {
            await connection.CallMethodAsync(CreateStopUnit(connection, unit));
        }
        catch (DBusErrorReplyException e) when (e.ErrorName == "org.freedesktop.systemd1.NoSuchUnit")
        {
            // An empty scope is garbage-collected by systemd: already gone is the goal.
        }
        catch (DBusErrorReplyException e)
        {
            throw new HostCgroupException($"systemd could not stop {unit}: {e.ErrorName}: {e.ErrorMessage}");
        }
    }

    /// <summary>StopUnit(s name, s mode).</summary>
    internal static MessageBuffer CreateStopUnit(DBusConnection connection, string unit)
    {
        using var writer = connection.GetMessageWriter();
        writer.WriteMethodCallHeader(Service, ObjectPath, Interface, "StopUnit", "ss");
        writer.WriteString(unit);
        writer.WriteString(SystemdScopeRequest.Mode);
        return writer.CreateMessage();
    }

    /// <summary>StartTransientUnit(s name, s mode, a(sv) properties, a(sa(sv)) aux).</summary>
    internal static MessageBuffer CreateStartTransientUnit(DBusConnection connection, SystemdScopeRequest request)
    {
        using var writer = connection.GetMessageWriter();
        writer.WriteMethodCallHeader(Service, ObjectPath, Interface, "StartTransientUnit", "ssa(sv)a(sa(sv))");
        writer.WriteString(request.Unit);
        writer.WriteString(SystemdScopeRequest.Mode);
        var properties = writer.WriteArrayStart(DBusType.Struct);
        foreach (var (name, value) in request.Properties())
        {
            writer.WriteStructureStart();
            writer.WriteString(name);
            writer.WriteVariant(value);
        }

        writer.WriteArrayEnd(properties);
        var aux = writer.WriteArrayStart(DBusType.Struct);
        writer.WriteArrayEnd(aux);
        return writer.CreateMessage();
    }

    private async Task<DBusConnection> ConnectAsync()
    {
        var connection = new DBusConnection(address ?? Environment.GetEnvironmentVariable("DBUS_SYSTEM_BUS_ADDRESS") ?? DBusAddress.System
            ?? "unix:path=/run/dbus/system_bus_socket");
        try
        {
            await connection.ConnectAsync();
            return connection;
        }
        catch (Exception e) when (e is DBusConnectionException or IOException or System.Net.Sockets.SocketException)
        {
            connection.Dispose();
            throw new HostCgroupException($"cannot reach systemd on the system bus: {e.Message}");
        }
    }
}
