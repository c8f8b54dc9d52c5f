using ShimV2.Shim.Sandbox;

namespace ShimV2.Shim.Tests;

public class SandboxStateTests
{
    /// <summary>Every valid pair and where it leads; every other pair must throw.</summary>
    private static readonly Dictionary<(SandboxState, SandboxEvent), SandboxState> Valid = new()
    {
        [(SandboxState.None, SandboxEvent.Launch)] = SandboxState.Booting,
        [(SandboxState.None, SandboxEvent.VmExited)] = SandboxState.None,
        [(SandboxState.None, SandboxEvent.Stop)] = SandboxState.None,
        [(SandboxState.Booting, SandboxEvent.Booted)] = SandboxState.Ready,
        [(SandboxState.Booting, SandboxEvent.BootFailed)] = SandboxState.None,
        [(SandboxState.Ready, SandboxEvent.VmExited)] = SandboxState.Dead,
        [(SandboxState.Ready, SandboxEvent.Stop)] = SandboxState.Stopping,
        [(SandboxState.Stopping, SandboxEvent.VmExited)] = SandboxState.Stopping,
        [(SandboxState.Stopping, SandboxEvent.Stopped)] = SandboxState.None,
        [(SandboxState.Dead, SandboxEvent.VmExited)] = SandboxState.Dead,
        [(SandboxState.Dead, SandboxEvent.Stop)] = SandboxState.Stopping,
    };

    public static TheoryData<SandboxState, SandboxEvent> Pairs()
    {
        var data = new TheoryData<SandboxState, SandboxEvent>();
        foreach (var state in Enum.GetValues<SandboxState>())
        {
            foreach (var evt in Enum.GetValues<SandboxEvent>())
            {
                data.Add(state, evt);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Pairs))]
    public void Every_state_and_event_pair_leads_where_the_table_says_or_is_refused(SandboxState state, SandboxEvent evt)
    {
        if (Valid.TryGetValue((state, evt), out var next))
        {
            Assert.Equal(next, SandboxStateMachine.Next(state, evt));
        }
        else
        {
            var e = Assert.Throws<InvalidOperationException>(() => SandboxStateMachine.Next(state, evt));
            Assert.Equal($"invalid sandbox transition: {evt} in state {state}", e.Message);
        }
    }
}
