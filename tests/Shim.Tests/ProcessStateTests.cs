using ShimV2.Shim.Processes;
using ShimV2.Ttrpc;

namespace ShimV2.Shim.Tests;

public class ProcessStateTests
{
    private static readonly ProcessStateKind[] Kinds = Enum.GetValues<ProcessStateKind>();

    private static readonly (string Name, Func<ProcessState, ProcessState> Operation)[] Operations =
    [
        ("start", s => s.Start()),
        ("pause", s => s.Pause()),
        ("resume", s => s.Resume()),
        ("delete", s => s.Delete()),
        ("exit", s => s.Exited()),
    ];

    public static TheoryData<ProcessStateKind, string> Matrix()
    {
        var data = new TheoryData<ProcessStateKind, string>();
        foreach (var kind in Kinds)
        {
            foreach (var (name, _) in Operations)
            {
                data.Add(kind, name);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Every_state_and_operation_agrees_with_the_transition_table(ProcessStateKind from, string operation)
    {
        var apply = Operations.Single(o => o.Name == operation).Operation;
        ProcessState next;
        try
        {
            next = apply(ProcessState.Of(from));
        }
        catch (ShimException e)
        {
            Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
            Assert.Equal($"cannot {operation} task in {from.ToString().ToLowerInvariant()} state", e.Message);
            Assert.DoesNotContain(Kinds, to => ProcessTransitions.IsValid(from, to) && Expected(operation, from, to));
            return;
        }

        Assert.True(ProcessTransitions.IsValid(from, next.Kind), $"{operation} from {from} gave {next.Kind}, not in the table");
        Assert.True(Expected(operation, from, next.Kind), $"{operation} from {from} gave {next.Kind}");
    }

    [Fact]
    public void Every_transition_in_the_table_is_reachable_by_some_operation()
    {
        foreach (var from in Kinds)
        {
            foreach (var to in Kinds.Where(to => ProcessTransitions.IsValid(from, to)))
            {
                var reachable = Operations.Any(o =>
                {
                    try
                    {
                        return o.Operation(ProcessState.Of(from)).Kind == to;
                    }
                    catch (ShimException)
                    {
                        return false;
                    }
                });
                Assert.True(reachable, $"{from} -> {to} is in the table but no operation performs it");
            }
        }
    }

    [Theory]
    [InlineData(ProcessStateKind.Created, true)]
    [InlineData(ProcessStateKind.Running, true)]
    [InlineData(ProcessStateKind.Paused, true)]
    [InlineData(ProcessStateKind.Stopped, false)]
    [InlineData(ProcessStateKind.Deleted, false)]
    public void Kill_of_a_finished_process_is_NotFound(ProcessStateKind state, bool allowed)
    {
        var check = () => ProcessState.Of(state).CheckKill();
        if (allowed)
        {
            check();
        }
        else
        {
            Assert.Equal(ErrorKind.NotFound, Assert.Throws<ShimException>(check).Kind);
        }
    }

    // The operation each transition is named for, as containerd's init_state.go has them.
    private static bool Expected(string operation, ProcessStateKind from, ProcessStateKind to) => (operation, from, to) switch
    {
        ("start", ProcessStateKind.Created, ProcessStateKind.Running) => true,
        ("pause", ProcessStateKind.Running, ProcessStateKind.Paused) => true,
        ("resume", ProcessStateKind.Paused, ProcessStateKind.Running) => true,
        ("delete", ProcessStateKind.Created or ProcessStateKind.Stopped, ProcessStateKind.Deleted) => true,
        ("exit", ProcessStateKind.Created or ProcessStateKind.Running or ProcessStateKind.Paused, ProcessStateKind.Stopped) => true,
        _ => false,
    };
}
