using System.Collections.Frozen;
using ShimV2.GuestAgent.Oci;

namespace ShimV2.GuestAgent.Seccomp;

/// <summary>A compiled filter: what csharp-nsexec hands to seccomp(SECCOMP_SET_MODE_FILTER).</summary>
/// <param name="Program">struct sock_filter[], little-endian.</param>
/// <param name="Flags">SECCOMP_FILTER_FLAG_* bits.</param>
/// <param name="Ignored">Syscall names the guest's architectures don't have (ignored, as runc does).</param>
internal sealed record SeccompFilter(byte[] Program, uint Flags, IReadOnlyList<string> Ignored)
{
    public int InstructionCount => Program.Length / 8;
}

/// <summary>
/// Compiles an OCI linux.seccomp profile into a classic BPF program, with the meaning runc gives it through
/// libseccomp: per architecture a binary search over syscall-number ranges, rules evaluated in profile order
/// (conditions of one rule all hold, 64-bit argument compares), the default action otherwise, and -ENOSYS for
/// numbers above the newest syscall the profile names (so a libc probing a call newer than the profile falls back,
/// as with runc). Architectures: x86_64 always (the guest's), i386 and x32 when listed; any other arch is killed.
/// </summary>
internal static class SeccompCompiler
{
    public const uint AuditArchX86_64 = 0xC000003E;
    public const uint AuditArchI386 = 0x40000003;

    public const uint RetKillProcess = 0x80000000;
    public const uint RetKillThread = 0x00000000;
    public const uint RetTrap = 0x00030000;
    public const uint RetErrno = 0x00050000;
    public const uint RetTrace = 0x7ff00000;
    public const uint RetLog = 0x7ffc0000;
    public const uint RetAllow = 0x7fff0000;

    private const uint EPERM = 1;
    private const uint ENOSYS = 38;

    // struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
    private const uint NrOffset = 0;
    private const uint ArchOffset = 4;
    private const uint ArgsOffset = 16;

    private static readonly FrozenDictionary<string, uint> FlagBits = new Dictionary<string, uint>(StringComparer.Ordinal)
    {
        ["SECCOMP_FILTER_FLAG_TSYNC"] = 1,
        ["SECCOMP_FILTER_FLAG_LOG"] = 2,
        ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"] = 4,
    }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>Architectures of the OCI spec that an x86_64 guest can never run: accepted and ignored.</summary>
    private static readonly FrozenSet<string> ForeignArchitectures = new[]
    {
        "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
    }.ToFrozenSet(StringComparer.Ordinal);

    private static readonly Lazy<FrozenDictionary<string, uint>> X86_64 = new(() => ToMap(SyscallTables.X86_64));
    private static readonly Lazy<FrozenDictionary<string, uint>> I386 = new(() => ToMap(SyscallTables.I386));
    private static readonly Lazy<FrozenDictionary<string, uint>> X32 = new(() => ToMap(SyscallTables.X32));

    private enum CompareOp
    {
        NotEqual,
        LessThan,
        LessOrEqual,
        Equal,
        GreaterOrEqual,
        GreaterThan,
        MaskedEqual,
    }

    public static SeccompFilter Compile(OciSeccomp profile)
    {
        if (!string.IsNullOrEmpty(profile.ListenerPath))
        {
            throw Invalid($"a seccomp agent (listenerPath \"{profile.ListenerPath}\") is not supported in the guest");
        }

        var defaultAction = Action(profile.DefaultAction ?? throw Invalid("defaultAction is missing"), profile.DefaultErrnoRet, "defaultAction");
        uint flags = 0;
        foreach (var flag in profile.Flags ?? [])
        {
            flags |= FlagBits.TryGetValue(flag, out var bit) ? bit : throw Invalid($"unsupported flag \"{flag}\"");
        }

        var (i386, x32) = Architectures(profile.Architectures);
        var rules = (profile.Syscalls ?? []).Select(Rule).ToList();
        var ignored = new SortedSet<string>(StringComparer.Ordinal);

        var asm = new BpfAssembler();
        var badArch = BpfAssembler.NewLabel();
        var x86_64Section = BpfAssembler.NewLabel();
        var i386Section = BpfAssembler.NewLabel();
        var x32Section = BpfAssembler.NewLabel();

        asm.Load(ArchOffset);
        asm.JumpIf(BpfJump.Equal, AuditArchX86_64, x86_64Section);
        if (i386)
        {
            asm.JumpIf(BpfJump.Equal, AuditArchI386, i386Section);
        }

        asm.Return(RetKillProcess);

        // x32 calls arrive as AUDIT_ARCH_X86_64 with the x32 bit set: split them off first.
        asm.Bind(x86_64Section);
        asm.Load(NrOffset);
        asm.JumpIf(BpfJump.GreaterOrEqual, SyscallTables.X32SyscallBit, x32 ? x32Section : badArch);
        Section(asm, X86_64.Value, rules, defaultAction, 0, SyscallTables.X32SyscallBit - 1, wide: true, ignored);
        if (x32)
        {
            asm.Bind(x32Section);
            Section(asm, X32.Value, rules, defaultAction, SyscallTables.X32SyscallBit, uint.MaxValue, wide: true, ignored);
        }

        if (i386)
        {
            asm.Bind(i386Section);
            asm.Load(NrOffset);
            Section(asm, I386.Value, rules, defaultAction, 0, uint.MaxValue, wide: false, ignored);
        }

        asm.Bind(badArch);
        asm.Return(RetKillProcess);

        // A name counts as ignored only when no listed architecture knows it.
        ignored.RemoveWhere(name => X86_64.Value.ContainsKey(name) || (i386 && I386.Value.ContainsKey(name)) || (x32 && X32.Value.ContainsKey(name)));
        try
        {
            return new SeccompFilter(asm.Assemble(), flags, [.. ignored]);
        }
        catch (InvalidOperationException e)
        {
            throw Invalid(e.Message);
        }
    }

    /// <summary>The section of one architecture; A holds the syscall number on entry.</summary>
    private static void Section(
        BpfAssembler asm, FrozenDictionary<string, uint> table, List<SyscallRule> rules, uint defaultAction,
        uint low, uint high, bool wide, SortedSet<string> ignored)
    {
        var byNumber = new SortedDictionary<uint, List<SyscallRule>>();
        foreach (var rule in rules)
        {
            foreach (var name in rule.Names)
            {
                if (!table.TryGetValue(name, out var nr))
                {
                    ignored.Add(name);
                    continue;
                }

                if (!byNumber.TryGetValue(nr, out var list))
                {
                    byNumber[nr] = list = [];
                }

                list.Add(rule);
            }
        }

        // Ranges of numbers with one outcome: a return value, or a block of argument checks.
        var ranges = new List<(uint Start, uint? Ret, uint Nr)>();
        void Add(uint start, uint? ret, uint nr)
        {
            if (ranges.Count > 0 && ret != null && ranges[^1].Ret == ret)
            {
                return;
            }

            ranges.Add((start, ret, nr));
        }

        var next = low;
        var blocks = new List<(uint Nr, List<SyscallRule> Rules)>();
        foreach (var (nr, list) in byNumber)
        {
            if (nr > next)
            {
                Add(next, defaultAction, 0);
            }

            var unconditional = list[0].Args.Count == 0;
            if (unconditional)
            {
                Add(nr, list[0].Action, nr);
            }
            else
            {
                Add(nr, null, nr);
                blocks.Add((nr, list));
            }

            next = nr + 1;
        }

        if (byNumber.Count == 0 || next - 1 < high)
        {
            // Calls newer than anything the profile names: ENOSYS rather than a default of EPERM or kill.
            var newer = byNumber.Count > 0 && defaultAction != RetAllow && defaultAction != RetLog ? RetErrno | ENOSYS : defaultAction;
            Add(next, newer, 0);
        }

        var blockLabels = blocks.ToDictionary(b => b.Nr, _ => BpfAssembler.NewLabel());
        Tree(asm, ranges, 0, ranges.Count - 1, blockLabels);
        foreach (var (nr, list) in blocks)
        {
            asm.Bind(blockLabels[nr]);
            Block(asm, list, defaultAction, wide);
        }
    }

    /// <summary>Binary search over ranges[first..last] (contiguous, ascending); A holds the syscall number.</summary>
    private static void Tree(BpfAssembler asm, List<(uint Start, uint? Ret, uint Nr)> ranges, int first, int last, Dictionary<uint, BpfLabel> blocks)
    {
        if (first == last)
        {
            var (_, ret, nr) = ranges[first];
            if (ret is { } value)
            {
                asm.Return(value);
            }
            else
            {
                asm.Goto(blocks[nr]);
            }

            return;
        }

        var mid = (first + last + 1) / 2;
        var right = BpfAssembler.NewLabel();
        asm.JumpIf(BpfJump.GreaterOrEqual, ranges[mid].Start, right);
        Tree(asm, ranges, first, mid - 1, blocks);
        asm.Bind(right);
        Tree(asm, ranges, mid, last, blocks);
    }

    /// <summary>The rules of one syscall in profile order: the first whose conditions all hold decides.</summary>
    private static void Block(BpfAssembler asm, List<SyscallRule> rules, uint defaultAction, bool wide)
    {
        foreach (var rule in rules)
        {
            var nextRule = BpfAssembler.NewLabel();
            foreach (var arg in rule.Args)
            {
                Condition(asm, arg, nextRule, wide);
            }

            asm.Return(rule.Action);
            asm.Bind(nextRule);
            if (rule.Args.Count == 0)
            {
                return;
            }
        }

        asm.Return(defaultAction);
    }

    /// <summary>Falls through when the condition holds, else jumps to <paramref name="fail"/>.</summary>
    private static void Condition(BpfAssembler asm, ArgCondition c, BpfLabel fail, bool wide)
    {
        var lo = ArgsOffset + (8 * c.Index);
        var hi = lo + 4;
        var (vLo, vHi) = ((uint)c.Value, (uint)(c.Value >> 32));
        var pass = BpfAssembler.NewLabel();
        switch (c.Op)
        {
            case CompareOp.Equal:
                if (wide)
                {
                    asm.Load(hi);
                    asm.JumpUnless(BpfJump.Equal, vHi, fail);
                }

                asm.Load(lo);
                asm.JumpUnless(BpfJump.Equal, vLo, fail);
                break;
            case CompareOp.NotEqual:
                if (wide)
                {
                    asm.Load(hi);
                    asm.JumpUnless(BpfJump.Equal, vHi, pass);
                }

                asm.Load(lo);
                asm.JumpIf(BpfJump.Equal, vLo, fail);
                break;
            case CompareOp.MaskedEqual:
                // OCI: value is the mask, valueTwo what the masked argument must equal (libseccomp's order).
                var (eLo, eHi) = ((uint)c.ValueTwo, (uint)(c.ValueTwo >> 32));
                if (wide)
                {
                    asm.Load(hi);
                    asm.And(vHi);
                    asm.JumpUnless(BpfJump.Equal, eHi, fail);
                }

                asm.Load(lo);
                asm.And(vLo);
                asm.JumpUnless(BpfJump.Equal, eLo, fail);
                break;
            case CompareOp.GreaterThan:
            case CompareOp.GreaterOrEqual:
                if (wide)
                {
                    asm.Load(hi);
                    asm.JumpIf(BpfJump.Greater, vHi, pass);
                    asm.JumpUnless(BpfJump.Equal, vHi, fail);
                }

                asm.Load(lo);
                asm.JumpUnless(c.Op == CompareOp.GreaterThan ? BpfJump.Greater : BpfJump.GreaterOrEqual, vLo, fail);
                break;
            case CompareOp.LessThan:
            case CompareOp.LessOrEqual:
                if (wide)
                {
                    asm.Load(hi);
                    asm.JumpIf(BpfJump.Greater, vHi, fail);
                    asm.JumpUnless(BpfJump.Equal, vHi, pass);
                }

                asm.Load(lo);
                asm.JumpIf(c.Op == CompareOp.LessThan ? BpfJump.GreaterOrEqual : BpfJump.Greater, vLo, fail);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(c), c.Op, "unknown compare op");
        }

        asm.Bind(pass);
    }

    private static (bool I386, bool X32) Architectures(List<string>? names)
    {
        bool i386 = false, x32 = false;
        foreach (var name in names ?? [])
        {
            switch (name)
            {
                case "SCMP_ARCH_X86_64":
                    break;
                case "SCMP_ARCH_X86":
                    i386 = true;
                    break;
                case "SCMP_ARCH_X32":
                    x32 = true;
                    break;
                default:
                    if (!ForeignArchitectures.Contains(name))
                    {
                        throw Invalid($"unknown architecture \"{name}\"");
                    }

                    break;
            }
        }

        return (i386, x32);
    }

    private static SyscallRule Rule(OciSyscall syscall, int index)
    {
        var where = $"syscalls[{index}]";
        var names = syscall.Names ?? [];
        var action = Action(syscall.Action ?? throw Invalid($"{where} has no action"), syscall.ErrnoRet, where);
        var args = new List<ArgCondition>();
        foreach (var arg in syscall.Args ?? [])
        {
            if (arg.Index > 5)
            {
                throw Invalid($"{where}: argument index {arg.Index} is out of range (0-5)");
            }

            var op = arg.Op switch
            {
                "SCMP_CMP_NE" => CompareOp.NotEqual,
                "SCMP_CMP_LT" => CompareOp.LessThan,
                "SCMP_CMP_LE" => CompareOp.LessOrEqual,
                "SCMP_CMP_EQ" => CompareOp.Equal,
                "SCMP_CMP_GE" => CompareOp.GreaterOrEqual,
                "SCMP_CMP_GT" => CompareOp.GreaterThan,
                "SCMP_CMP_MASKED_EQ" => CompareOp.MaskedEqual,
                _ => throw Invalid($"{where}: unknown operator \"{arg.Op}\""),
            };
            args.Add(new ArgCondition(arg.Index, arg.Value, arg.ValueTwo, op));
        }

        return new SyscallRule(names, action, args);
    }

    private static uint Action(string name, uint? errnoRet, string where)
    {
        var errno = (errnoRet ?? EPERM) & 0xFFFF;
        return name switch
        {
            "SCMP_ACT_ALLOW" => RetAllow,
            "SCMP_ACT_ERRNO" => RetErrno | errno,
            "SCMP_ACT_KILL" or "SCMP_ACT_KILL_THREAD" => RetKillThread,
            "SCMP_ACT_KILL_PROCESS" => RetKillProcess,
            "SCMP_ACT_TRAP" => RetTrap,
            "SCMP_ACT_TRACE" => RetTrace | errno,
            "SCMP_ACT_LOG" => RetLog,
            "SCMP_ACT_NOTIFY" => throw Invalid($"{where}: SCMP_ACT_NOTIFY needs a seccomp agent, which the guest does not support"),
            _ => throw Invalid($"{where}: unknown action \"{name}\""),
        };
    }

    private static FrozenDictionary<string, uint> ToMap((string Name, uint Number)[] table) =>
        table.ToFrozenDictionary(e => e.Name, e => e.Number, StringComparer.Ordinal);

    private static AgentException Invalid(string message) => AgentException.InvalidArgument("seccomp: " + message);

    private sealed record SyscallRule(List<string> Names, uint Action, List<ArgCondition> Args);

    private sealed record ArgCondition(uint Index, ulong Value, ulong ValueTwo, CompareOp Op);
}
