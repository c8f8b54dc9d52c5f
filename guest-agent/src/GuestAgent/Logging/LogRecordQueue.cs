using ShimV2.Agent.Protocol.V1;

namespace ShimV2.GuestAgent.Logging;

/// <summary>
/// The agent's warnings and errors waiting for the host (GetLogRecords). Bounded: when full, the oldest record
/// goes and is counted, so a guest that logs in a loop costs a fixed amount of memory and the host learns how
/// many it missed. Records are kept until taken, also those logged before the host connected.
/// </summary>
internal sealed class LogRecordQueue
{
    public const int DefaultCapacity = 1024;

    private readonly Lock _lock = new();
    private readonly Queue<LogRecord> _records = new();
    private readonly int _capacity;
    private TaskCompletionSource _available = NewSignal();
    private ulong _dropped;

    public LogRecordQueue(int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _capacity = capacity;
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _records.Count;
            }
        }
    }

    public void Add(LogRecord record)
    {
        lock (_lock)
        {
            if (_records.Count == _capacity)
            {
                _records.Dequeue();
                _dropped++;
            }

            _records.Enqueue(record);
            _available.TrySetResult();
        }
    }

    /// <summary>
    /// Up to <paramref name="max"/> records, oldest first, and how many were dropped since the last take. With
    /// <paramref name="wait"/>, waits until there is something to answer.
    /// </summary>
    public async Task<LogRecords> TakeAsync(int max, bool wait, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        while (true)
        {
            Task available;
            lock (_lock)
            {
                if (_records.Count > 0 || _dropped > 0 || !wait)
                {
                    var answer = new LogRecords { Dropped = _dropped };
                    while (answer.Records.Count < max && _records.TryDequeue(out var record))
                    {
                        answer.Records.Add(record);
                    }

                    _dropped = 0;
                    if (_records.Count == 0)
                    {
                        _available = NewSignal();
                    }

                    return answer;
                }

                available = _available.Task;
            }

            await available.WaitAsync(cancellationToken);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
