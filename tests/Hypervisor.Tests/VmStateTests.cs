namespace ShimV2.Hypervisor.Tests;

/// <summary>Every (from, to) pair of <see cref="VmState"/> against the table of valid transitions.</summary>
public sealed class VmStateTests
{
    /// <summary>The valid transitions, written out independently of the implementation.</summary>
    private static readonly HashSet<(VmState From, VmState To)> Valid =
    [
        (VmState.Created, VmState.Starting),
        (VmState.Created, VmState.Stopped),
        (VmState.Created, VmState.Failed),
        (VmState.Starting, VmState.Running),
        (VmState.Starting, VmState.Stopping),
        (VmState.Starting, VmState.Stopped),
        (VmState.Starting, VmState.Failed),
        (VmState.Running, VmState.Paused),
        (VmState.Running, VmState.Stopping),
        (VmState.Running, VmState.Stopped),
        (VmState.Running, VmState.Failed),
        (VmState.Paused, VmState.Running),
        (VmState.Paused, VmState.Stopping),
        (VmState.Paused, VmState.Stopped),
        (VmState.Paused, VmState.Failed),
        (VmState.Stopping, VmState.Stopped),
        (VmState.Stopping, VmState.Failed),
    ];

    public static TheoryData<VmState, VmState, bool> Matrix
    {
        get
        {
            var data = new TheoryData<VmState, VmState, bool>();
            foreach (var from in Enum.GetValues<VmState>())
            {
                foreach (var to in Enum.GetValues<VmState>())
                {
                    data.Add(from, to, Valid.Contains((from, to)));
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Transition(VmState from, VmState to, bool allowed) =>
        Assert.Equal(allowed, VmStateMachine.CanTransition(from, to));

    [Fact]
    public void The_matrix_covers_every_pair() => Assert.Equal(7 * 7, Matrix.Count);

    [Theory]
    [InlineData(VmState.Created, false)]
    [InlineData(VmState.Starting, false)]
    [InlineData(VmState.Running, false)]
    [InlineData(VmState.Paused, false)]
    [InlineData(VmState.Stopping, false)]
    [InlineData(VmState.Stopped, true)]
    [InlineData(VmState.Failed, true)]
    public void Terminal_states_have_no_way_out(VmState state, bool terminal)
    {
        Assert.Equal(terminal, VmStateMachine.IsTerminal(state));
        Assert.Equal(terminal, Enum.GetValues<VmState>().All(to => !VmStateMachine.CanTransition(state, to)));
    }
}
