namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>Polls a condition that gives no notification (a process list, a file, `ctr task ls`) up to a deadline.
/// Not a sleep: it returns as soon as the condition holds, and fails saying what was last seen.</summary>
public static class Eventually
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    public static async Task<T> GetAsync<T>(Func<Task<(bool Done, T Value)>> probe, TimeSpan timeout, Func<T, string> describeFailure)
    {
        using var deadline = new CancellationTokenSource(timeout);
        using var timer = new PeriodicTimer(Interval);
        while (true)
        {
            var (done, value) = await probe();
            if (done)
            {
                return value;
            }

            try
            {
                await timer.WaitForNextTickAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                var (lastDone, last) = await probe();
                if (lastDone)
                {
                    return last;
                }

                Assert.Fail($"not within {timeout.TotalSeconds:0} s: {describeFailure(last)}");
            }
        }
    }

    public static Task TrueAsync(Func<bool> condition, TimeSpan timeout, Func<string> describeFailure) =>
        GetAsync(() => Task.FromResult((condition(), 0)), timeout, _ => describeFailure());

    public static Task TrueAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> describeFailure) =>
        GetAsync(async () => (await condition(), 0), timeout, _ => describeFailure());
}
