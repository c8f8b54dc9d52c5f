using System.Text.Json;
using ShimV2.GuestAgent.Helper;
using ShimV2.GuestAgent.Oci;
using ShimV2.GuestAgent.Seccomp;
using ShimV2.GuestAgent.Tests.Support;
using ShimV2.Ttrpc;

namespace ShimV2.GuestAgent.Tests;

/// <summary>
/// The filter the guest loads for an OCI seccomp profile, run through a BPF interpreter that checks what the kernel
/// checks. (The VM and end-to-end tests load it into a real kernel.)
/// </summary>
public sealed class SeccompCompilerTests
{
    private const uint X86_64 = SeccompCompiler.AuditArchX86_64;
    private const uint I386 = SeccompCompiler.AuditArchI386;
    private const uint Aarch64 = 0xC00000B7;
    private const uint Allow = SeccompCompiler.RetAllow;
    private const uint Eperm = SeccompCompiler.RetErrno | 1;
    private const uint Enosys = SeccompCompiler.RetErrno | 38;

    // x86_64 numbers
    private const uint Read = 0;
    private const uint Getpid = 39;
    private const uint Clone = 56;
    private const uint Personality = 135;
    private const uint Mount = 165;
    private const uint Clone3 = 435;

    private static readonly Lazy<SeccompFilter> Default = new(() => SeccompCompiler.Compile(Load("containerd-1.6-default-seccomp.json")));

    [Fact]
    public void Containerd_default_profile_fits_the_kernel_limit_and_ignores_only_calls_x86_lacks()
    {
        var filter = Default.Value;
        Assert.InRange(filter.InstructionCount, 50, 1000);
        Assert.Equal(0u, filter.Flags);
        Assert.Equal(["recv", "send"], filter.Ignored); // socketcall subcalls on i386; syscalls on other arches
    }

    [Theory]
    [InlineData(Read, 0ul, Allow)]
    [InlineData(Mount, 0ul, Eperm)]                    // needs CAP_SYS_ADMIN: not in the default list
    [InlineData(Clone, 17ul, Allow)]                   // SIGCHLD: a plain fork
    [InlineData(Clone, 0x10000011ul, Eperm)]           // CLONE_NEWUSER: masked out by the rule
    [InlineData(Clone, 0x100000000ul, Allow)]          // bits above the mask don't matter
    [InlineData(Clone3, 0ul, Enosys)]                  // the profile's own errnoRet
    [InlineData(Personality, 8ul, Allow)]
    [InlineData(Personality, 0xffffffffUL, Allow)]
    [InlineData(Personality, 0x1ffffffffUL, Eperm)]    // 64-bit compare: the high word counts
    [InlineData(Personality, 1ul, Eperm)]
    [InlineData(1000u, 0ul, Enosys)]                   // newer than anything the profile names
    [InlineData(0x3fffffffu, 0ul, Enosys)]
    public void Containerd_default_profile_on_x86_64(uint nr, ulong arg0, uint expected)
    {
        Assert.Equal(Hex(expected), Hex(BpfInterpreter.Run(Default.Value.Program, X86_64, nr, arg0)));
    }

    [Theory]
    [InlineData(I386, 3u, Allow)]                      // i386 read
    [InlineData(I386, 102u, Allow)]                    // i386 socketcall: a name only i386 has
    [InlineData(I386, 21u, Eperm)]                     // i386 mount
    [InlineData(X86_64, 0x40000000u, Allow)]           // x32 read
    [InlineData(X86_64, 0x400000a5u, Eperm)]           // x32 mount
    [InlineData(Aarch64, 63u, SeccompCompiler.RetKillProcess)] // an architecture the profile doesn't list
    public void Containerd_default_profile_on_other_architectures(uint arch, uint nr, uint expected)
    {
        Assert.Equal(Hex(expected), Hex(BpfInterpreter.Run(Default.Value.Program, arch, nr)));
    }

    [Fact]
    public void Unlisted_compat_architectures_are_killed()
    {
        var filter = Compile("""{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"]}""");
        Assert.Equal(Hex(Allow), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid)));
        Assert.Equal(Hex(SeccompCompiler.RetKillProcess), Hex(BpfInterpreter.Run(filter.Program, I386, 20)));
        Assert.Equal(Hex(SeccompCompiler.RetKillProcess), Hex(BpfInterpreter.Run(filter.Program, X86_64, 0x40000000)));
    }

    public static TheoryData<string, ulong> Comparisons()
    {
        var data = new TheoryData<string, ulong>();
        foreach (var op in new[] { "SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE" })
        {
            foreach (var value in new ulong[] { 0, 5, 0xffffffff, 0x100000005, ulong.MaxValue })
            {
                data.Add(op, value);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Comparisons))]
    public void Argument_comparisons_are_unsigned_64_bit(string op, ulong value)
    {
        var filter = Compile($$"""
            {"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
              {"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":2,"value":{{value}},"op":"{{op}}"}]}]}
            """);
        foreach (var arg in Probes(value))
        {
            var holds = op switch
            {
                "SCMP_CMP_EQ" => arg == value,
                "SCMP_CMP_NE" => arg != value,
                "SCMP_CMP_LT" => arg < value,
                "SCMP_CMP_LE" => arg <= value,
                "SCMP_CMP_GT" => arg > value,
                _ => arg >= value,
            };
            var result = BpfInterpreter.Run(filter.Program, X86_64, Getpid, 0, 0, arg);
            Assert.True(
                result == (holds ? SeccompCompiler.RetErrno | 13 : Allow),
                $"arg2 = 0x{arg:x} {op} 0x{value:x} should {(holds ? "" : "not ")}match; got {Hex(result)}");
        }
    }

    [Fact]
    public void Masked_equal_takes_the_mask_from_value_and_the_expected_bits_from_valueTwo()
    {
        var filter = Compile("""
            {"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
              {"names":["getpid"],"action":"SCMP_ACT_KILL_PROCESS","args":[{"index":0,"value":4294967311,"valueTwo":4294967298,"op":"SCMP_CMP_MASKED_EQ"}]}]}
            """);
        // mask 0x1_0000000f, expected 0x1_00000002
        Assert.Equal(Hex(SeccompCompiler.RetKillProcess), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid, 0x1_000000f2)));
        Assert.Equal(Hex(Allow), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid, 0x000000f2)));
        Assert.Equal(Hex(Allow), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid, 0x1_00000003)));
    }

    [Fact]
    public void Conditions_of_a_rule_all_hold_and_the_first_matching_rule_decides()
    {
        var filter = Compile("""
            {"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
              {"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":22,"args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":1,"value":2,"op":"SCMP_CMP_EQ"}]},
              {"names":["getpid"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"}]},
              {"names":["getpid", "read"],"action":"SCMP_ACT_LOG"}]}
            """);
        Assert.Equal(Hex(SeccompCompiler.RetErrno | 22), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid, 1, 2)));
        Assert.Equal(Hex(Allow), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid, 1, 3)));
        Assert.Equal(Hex(SeccompCompiler.RetLog), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid, 2, 2)));
        Assert.Equal(Hex(SeccompCompiler.RetLog), Hex(BpfInterpreter.Run(filter.Program, X86_64, Read)));
        Assert.Equal(Hex(Eperm), Hex(BpfInterpreter.Run(filter.Program, X86_64, 1)));
        Assert.Equal(Hex(Enosys), Hex(BpfInterpreter.Run(filter.Program, X86_64, 400)));
    }

    [Theory]
    [InlineData("SCMP_ACT_KILL", SeccompCompiler.RetKillThread)]
    [InlineData("SCMP_ACT_KILL_THREAD", SeccompCompiler.RetKillThread)]
    [InlineData("SCMP_ACT_KILL_PROCESS", SeccompCompiler.RetKillProcess)]
    [InlineData("SCMP_ACT_TRAP", SeccompCompiler.RetTrap)]
    [InlineData("SCMP_ACT_ERRNO", SeccompCompiler.RetErrno | 1)]
    [InlineData("SCMP_ACT_TRACE", SeccompCompiler.RetTrace | 1)]
    [InlineData("SCMP_ACT_LOG", SeccompCompiler.RetLog)]
    [InlineData("SCMP_ACT_ALLOW", SeccompCompiler.RetAllow)]
    public void Actions_map_to_seccomp_return_values(string action, uint expected)
    {
        var filter = Compile($$"""{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpid"],"action":"{{action}}"}]}""");
        Assert.Equal(Hex(expected), Hex(BpfInterpreter.Run(filter.Program, X86_64, Getpid)));
    }

    [Fact]
    public void Flags_names_unknown_to_the_guest_and_no_rules()
    {
        var filter = Compile("""
            {"defaultAction":"SCMP_ACT_ERRNO","flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
             "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64"],
             "syscalls":[{"names":["read","no_such_call","socketcall"],"action":"SCMP_ACT_ALLOW"}]}
            """);
        Assert.Equal(6u, filter.Flags);
        Assert.Equal(["no_such_call", "socketcall"], filter.Ignored); // socketcall is i386's, which isn't listed
        Assert.Equal(Hex(Allow), Hex(BpfInterpreter.Run(filter.Program, X86_64, Read)));

        var empty = Compile("""{"defaultAction":"SCMP_ACT_KILL_PROCESS"}""");
        Assert.Equal(Hex(SeccompCompiler.RetKillProcess), Hex(BpfInterpreter.Run(empty.Program, X86_64, Read)));
        Assert.Equal(Hex(SeccompCompiler.RetKillProcess), Hex(BpfInterpreter.Run(empty.Program, X86_64, 5000)));
    }

    [Theory]
    [InlineData("""{"syscalls":[]}""", "defaultAction is missing")]
    [InlineData("""{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock"}""", "seccomp agent")]
    [InlineData("""{"defaultAction":"SCMP_ACT_NOTIFY"}""", "SCMP_ACT_NOTIFY")]
    [InlineData("""{"defaultAction":"SCMP_ACT_MAYBE"}""", "unknown action \"SCMP_ACT_MAYBE\"")]
    [InlineData("""{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}""", "unsupported flag")]
    [InlineData("""{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}""", "unknown architecture \"SCMP_ARCH_Z80\"")]
    [InlineData("""{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"]}]}""", "syscalls[0] has no action")]
    [InlineData("""{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}""", "index 6 is out of range")]
    [InlineData("""{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_ABOUT"}]}]}""", "unknown operator \"SCMP_CMP_ABOUT\"")]
    public void Bad_profiles_are_invalid_arguments_that_say_what_is_wrong(string json, string message)
    {
        var e = Assert.Throws<AgentException>(() => Compile(json));
        Assert.Equal(TtrpcStatusCode.InvalidArgument, e.Code);
        Assert.StartsWith("seccomp: ", e.Message, StringComparison.Ordinal);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_profile_too_large_for_the_kernel_is_refused()
    {
        var rules = string.Join(',', Enumerable.Range(0, 600).Select(i =>
            $$"""{"names":["getpid"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":{{i}},"op":"SCMP_CMP_EQ"}]}"""));
        var e = Assert.Throws<AgentException>(() => Compile($$"""{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{rules}}]}"""));
        Assert.Contains("at most 4096", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_planner_loads_the_filter_into_the_container_and_its_execs()
    {
        var spec = JsonSerializer.Deserialize("""
            {"process":{"args":["sh"],"cwd":"/","noNewPrivileges":true},
             "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}}}
            """, OciJsonContext.Default.OciSpec)!;
        var plan = ContainerPlanner.PlanCreate(spec, "/rootfs", terminal: false, consolePath: null, new PlannerContext());
        var filter = Assert.IsType<SeccompFilter>(plan.Seccomp);
        var records = HelperInstructions.Decode(plan.Instructions.Encode());
        var seccomp = Assert.Single(records, r => r.Op == HelperOp.Seccomp);
        Assert.Equal(filter.Program, seccomp.Payload[4..]);
        Assert.Contains("Seccomp " + filter.InstructionCount + " instructions", plan.Instructions.Describe(), StringComparison.Ordinal);

        var exec = ContainerPlanner.PlanExec(10, 0, spec.Process!, terminal: false, plan.Seccomp);
        Assert.Single(HelperInstructions.Decode(exec.Instructions.Encode()), r => r.Op == HelperOp.Seccomp);
        var noFilter = ContainerPlanner.PlanExec(10, 0, spec.Process!, terminal: false);
        Assert.DoesNotContain(HelperInstructions.Decode(noFilter.Instructions.Encode()), r => r.Op == HelperOp.Seccomp);
    }

    private static IEnumerable<ulong> Probes(ulong v)
    {
        ulong[] around = [0, 1, 4, 5, 6, 0xfffffffe, 0xffffffff, 0x100000000, 0x100000004, 0x100000005, 0x100000006, 0x200000005, ulong.MaxValue - 1, ulong.MaxValue];
        return around.Concat([v - 1, v, v + 1, v ^ 0x100000000]).Distinct();
    }

    private static SeccompFilter Compile(string json) =>
        SeccompCompiler.Compile(JsonSerializer.Deserialize(json, OciJsonContext.Default.OciSeccomp)!);

    private static OciSeccomp Load(string fixture) =>
        JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", fixture)), OciJsonContext.Default.OciSeccomp)!;

    private static string Hex(uint value) => $"0x{value:x8}";
}
