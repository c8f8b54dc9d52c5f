namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>Waits for a condition on state that gives no notification (a file QEMU writes), checking every few
/// milliseconds, up to a deadline. Not a sleep: it returns as soon as the condition holds.</summary>
public static class Eventually
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);

    public static async Task TrueAsync(Func<bool> condition, TimeSpan timeout, Func<string> describeFailure)
    {
        using var deadline = new CancellationTokenSource(timeout);
        using var timer = new PeriodicTimer(Interval);
        while (!condition())
        {
            try
            {
                await timer.WaitForNextTickAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"not within {timeout.TotalSeconds:0} s: {describeFailure()}");
            }
        }
    }
}
