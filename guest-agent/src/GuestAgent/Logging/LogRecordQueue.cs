using ShimV2.Agent.Protocol.V1;

namespace ShimV2.GuestAgent.Logging;

/// <summary>
/// The agent's warnings and errors waiting for the host (GetLogRecords). Each record gets a sequence number and
/// stays until the host acknowledges it (a later request's after_sequence): TTRPC has no cancel frame, so an
/// answer to a call the host gave up on is lost, and must be answered again. Bounded: when full, the oldest
/// record goes and, if it was never sent, is counted as dropped, so a guest that logs in a loop costs a fixed
/// amount of memory and the host learns how many it missed. Records logged before the host connected wait too.
/// </summary>
internal sealed class LogRecordQueue
{
    public const int DefaultCapacity = 1024;

    private readonly Lock _lock = new();
    private readonly Queue<LogRecord> _records = new();
    private readonly int _capacity;
    private TaskCompletionSource _available = NewSignal();
    private ulong _nextSequence = 1;
    private ulong _highestSent;
    private ulong _droppedTotal;

    public LogRecordQueue(int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _capacity = capacity;
    }

    /// <summary>Records not yet acknowledged.</summary>
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

    /// <summary>Numbers <paramref name="record"/> and queues it.</summary>
    public void Add(LogRecord record)
    {
        lock (_lock)
        {
            record.Sequence = _nextSequence++;
            if (_records.Count == _capacity && _records.Dequeue().Sequence > _highestSent)
            {
                _droppedTotal++;
            }

            _records.Enqueue(record);
            _available.TrySetResult();
        }
    }

    /// <summary>
    /// Forgets the records up to <paramref name="afterSequence"/>, then answers up to <paramref name="max"/> of the
    /// rest, oldest first. With <paramref name="wait"/>, first waits until there is one.
    /// </summary>
    public async Task<LogRecords> TakeAsync(ulong afterSequence, int max, bool wait, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        while (true)
        {
            Task available;
            lock (_lock)
            {
                while (_records.TryPeek(out var first) && first.Sequence <= afterSequence)
                {
                    _records.Dequeue();
                }

                if (_records.Count > 0 || !wait)
                {
                    var answer = new LogRecords { DroppedTotal = _droppedTotal };
                    answer.Records.AddRange(_records.Take(max));
                    if (answer.Records.Count > 0)
                    {
                        _highestSent = Math.Max(_highestSent, answer.Records[^1].Sequence);
                    }

                    return answer;
                }

                if (_available.Task.IsCompleted)
                {
                    _available = NewSignal();
                }

                available = _available.Task;
            }

            await available.WaitAsync(cancellationToken);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
