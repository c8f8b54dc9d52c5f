using System.Buffers.Binary;

namespace ShimV2.GuestAgent.Seccomp;

/// <summary>The conditional jumps of classic BPF (BPF_JMP | op | BPF_K).</summary>
internal enum BpfJump : ushort
{
    Equal = 0x10,
    Greater = 0x20,
    GreaterOrEqual = 0x30,
}

/// <summary>A forward jump target; bound once with <see cref="BpfAssembler.Bind"/>.</summary>
internal sealed class BpfLabel
{
    internal int Position { get; set; } = -1;
}

/// <summary>
/// A classic BPF assembler for seccomp filters, with labels. Conditional jumps only ever skip one instruction
/// (their far target goes through a following BPF_JA, whose offset is 32 bits), so no 8-bit jt/jf offset can
/// overflow however large the filter grows. Classic BPF jumps forward only; a backward label is a bug here.
/// </summary>
internal sealed class BpfAssembler
{
    /// <summary>BPF_MAXINSNS: the kernel refuses longer filters.</summary>
    public const int MaxInstructions = 4096;

    private const ushort LdWAbs = 0x20;   // BPF_LD | BPF_W | BPF_ABS
    private const ushort AluAndK = 0x54;  // BPF_ALU | BPF_AND | BPF_K
    private const ushort JmpJa = 0x05;    // BPF_JMP | BPF_JA
    private const ushort JmpK = 0x05;     // BPF_JMP | BPF_K, or'd with a BpfJump
    private const ushort RetK = 0x06;     // BPF_RET | BPF_K

    private readonly List<(ushort Code, byte Jt, byte Jf, uint K, BpfLabel? Target)> _code = [];

    public int Count => _code.Count;

    public static BpfLabel NewLabel() => new();

    public void Bind(BpfLabel label)
    {
        if (label.Position >= 0)
        {
            throw new InvalidOperationException("label bound twice");
        }

        label.Position = _code.Count;
    }

    /// <summary>A = the 32-bit word at <paramref name="offset"/> of struct seccomp_data.</summary>
    public void Load(uint offset) => _code.Add((LdWAbs, 0, 0, offset, null));

    public void And(uint mask) => _code.Add((AluAndK, 0, 0, mask, null));

    public void Return(uint value) => _code.Add((RetK, 0, 0, value, null));

    public void Goto(BpfLabel target) => _code.Add((JmpJa, 0, 0, 0, target));

    /// <summary>if (A op k) goto target.</summary>
    public void JumpIf(BpfJump op, uint k, BpfLabel target)
    {
        _code.Add(((ushort)(JmpK | (ushort)op), 0, 1, k, null));
        Goto(target);
    }

    /// <summary>if (!(A op k)) goto target.</summary>
    public void JumpUnless(BpfJump op, uint k, BpfLabel target)
    {
        _code.Add(((ushort)(JmpK | (ushort)op), 1, 0, k, null));
        Goto(target);
    }

    /// <summary>struct sock_filter[] as the kernel reads it (u16 code, u8 jt, u8 jf, u32 k; little-endian).</summary>
    public byte[] Assemble()
    {
        if (_code.Count > MaxInstructions)
        {
            throw new InvalidOperationException($"the filter has {_code.Count} instructions; the kernel takes at most {MaxInstructions}");
        }

        var bytes = new byte[_code.Count * 8];
        for (var pc = 0; pc < _code.Count; pc++)
        {
            var (code, jt, jf, k, target) = _code[pc];
            if (target != null)
            {
                if (target.Position < 0)
                {
                    throw new InvalidOperationException("jump to a label that was never bound");
                }

                if (target.Position <= pc)
                {
                    throw new InvalidOperationException("classic BPF cannot jump backwards");
                }

                k = (uint)(target.Position - pc - 1);
            }

            var span = bytes.AsSpan(pc * 8, 8);
            BinaryPrimitives.WriteUInt16LittleEndian(span, code);
            span[2] = jt;
            span[3] = jf;
            BinaryPrimitives.WriteUInt32LittleEndian(span[4..], k);
        }

        return bytes;
    }
}
