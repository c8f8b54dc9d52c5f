namespace ShimV2.Ttrpc;

/// <summary>What a server handler knows about the call it serves.</summary>
public sealed class TtrpcCallContext
{
    private readonly CancellationTokenSource? _deadlineSource;
    private readonly Lock _gate = new();
    private List<Action>? _completed;

    /// <summary>A context for calling a handler directly (tests, in-process dispatch).</summary>
    /// <param name="deadline">When the call expires; the token is not cancelled by it (pass one that is).</param>
    public TtrpcCallContext(
        string service,
        string method,
        IReadOnlyList<KeyValuePair<string, string>>? metadata = null,
        DateTimeOffset? deadline = null,
        CancellationToken cancellationToken = default)
    {
        Service = service;
        Method = method;
        Metadata = metadata ?? [];
        Deadline = deadline;
        CancellationToken = cancellationToken;
    }

    internal TtrpcCallContext(
        string service,
        string method,
        IReadOnlyList<KeyValuePair<string, string>> metadata,
        DateTimeOffset? deadline,
        CancellationTokenSource? deadlineSource,
        string peer,
        CancellationToken cancellationToken)
        : this(service, method, metadata, deadline, cancellationToken)
    {
        _deadlineSource = deadlineSource;
        Peer = peer;
    }

    /// <summary>The full service name, e.g. <c>containerd.task.v2.Task</c>.</summary>
    public string Service { get; }

    /// <summary>The method name, e.g. <c>Create</c>.</summary>
    public string Method { get; }

    /// <summary>The caller, e.g. <c>unix:</c> and the socket's remote address (often empty for unix sockets).</summary>
    public string Peer { get; } = "";

    /// <summary>Request metadata in wire order (keys may repeat).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Metadata { get; }

    /// <summary>From <c>Request.timeout_nano</c> (0 = none), measured from when the request was read.</summary>
    public DateTimeOffset? Deadline { get; }

    /// <summary>Cancelled at the deadline, when the connection closes, or on forced shutdown.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>True once the call's deadline has passed.</summary>
    public bool IsDeadlineExceeded =>
        _deadlineSource?.IsCancellationRequested == true || (Deadline is { } d && DateTimeOffset.UtcNow >= d);

    /// <summary>
    /// Runs <paramref name="callback"/> once the call's answer has been serialized (or the call failed): memory the
    /// answer refers to, such as a pooled buffer wrapped without a copy, may be reused from then on. Callbacks run
    /// on the server's thread and must not throw.
    /// </summary>
    public void OnCompleted(Action callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        lock (_gate)
        {
            (_completed ??= []).Add(callback);
        }
    }

    /// <summary>Runs the <see cref="OnCompleted"/> callbacks; the server calls it once.</summary>
    internal void Completed()
    {
        List<Action>? callbacks;
        lock (_gate)
        {
            callbacks = _completed;
            _completed = null;
        }

        callbacks?.ForEach(c => c());
    }

    /// <summary>The first value of a metadata key (compared case-insensitively, as ttrpc's MD), or null.</summary>
    public string? GetMetadata(string key)
    {
        foreach (var pair in Metadata)
        {
            if (string.Equals(pair.Key, key, StringComparison.OrdinalIgnoreCase))
            {
                return pair.Value;
            }
        }

        return null;
    }
}
