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

    /// <summary>What each action may do in each state, written out independently of the implementation.
    /// Unlisted pairs are invalid.</summary>
    private static readonly Dictionary<(VmState State, VmAction Action), VmActionVerdict> Actions = new()
    {
        [(VmState.Created, VmAction.Boot)] = VmActionVerdict.Proceed,
        [(VmState.Running, VmAction.Pause)] = VmActionVerdict.Proceed,
        [(VmState.Paused, VmAction.Pause)] = VmActionVerdict.AlreadyDone,
        [(VmState.Paused, VmAction.Resume)] = VmActionVerdict.Proceed,
        [(VmState.Running, VmAction.Resume)] = VmActionVerdict.AlreadyDone,
        [(VmState.Running, VmAction.Hotplug)] = VmActionVerdict.Proceed,
        [(VmState.Paused, VmAction.Hotplug)] = VmActionVerdict.Proceed,
        [(VmState.Created, VmAction.Stop)] = VmActionVerdict.Proceed,
        [(VmState.Starting, VmAction.Stop)] = VmActionVerdict.Proceed,
        [(VmState.Running, VmAction.Stop)] = VmActionVerdict.Proceed,
        [(VmState.Paused, VmAction.Stop)] = VmActionVerdict.Proceed,
        [(VmState.Stopping, VmAction.Stop)] = VmActionVerdict.Proceed,
        [(VmState.Stopped, VmAction.Stop)] = VmActionVerdict.AlreadyDone,
        [(VmState.Failed, VmAction.Stop)] = VmActionVerdict.AlreadyDone,
    };

    public static TheoryData<VmState, VmAction, VmActionVerdict> ActionMatrix
    {
        get
        {
            var data = new TheoryData<VmState, VmAction, VmActionVerdict>();
            foreach (var state in Enum.GetValues<VmState>())
            {
                foreach (var action in Enum.GetValues<VmAction>())
                {
                    data.Add(state, action, Actions.GetValueOrDefault((state, action), VmActionVerdict.Invalid));
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(ActionMatrix))]
    public void Action(VmState state, VmAction action, VmActionVerdict expected)
    {
        Assert.Equal(expected, VmStateMachine.Decide(state, action));
        if (expected == VmActionVerdict.Invalid)
        {
            var e = Assert.Throws<InvalidVmStateException>(() => VmStateMachine.Require(state, action, "pod"));
            Assert.Equal($"cannot {action.ToString().ToLowerInvariant()} vm pod: it is {state}", e.Message);
        }
        else
        {
            Assert.Equal(expected, VmStateMachine.Require(state, action, "pod"));
        }
    }

    [Fact]
    public void The_action_matrix_covers_every_pair() => Assert.Equal(7 * 5, ActionMatrix.Count);

    /// <summary>An action that proceeds leads somewhere the transition table allows (Stop to Stopping, the others
    /// to the state they name), so no allowed action can end in an ignored transition.</summary>
    [Theory]
    [MemberData(nameof(ActionMatrix))]
    public void Every_allowed_action_makes_a_valid_transition(VmState state, VmAction action, VmActionVerdict verdict)
    {
        if (verdict != VmActionVerdict.Proceed)
        {
            return;
        }

        VmState target = action switch
        {
            VmAction.Boot => VmState.Starting,
            VmAction.Pause => VmState.Paused,
            VmAction.Resume => VmState.Running,
            VmAction.Hotplug => state,
            _ => state == VmState.Stopping || state == VmState.Created ? VmState.Stopped : VmState.Stopping,
        };
        Assert.True(target == state || VmStateMachine.CanTransition(state, target), $"{action} in {state} leads to {target}");
    }
}
