using System.Buffers.Binary;

namespace ShimV2.GuestAgent.Tests.Support;

/// <summary>
/// Runs a seccomp classic-BPF program over one struct seccomp_data, as the kernel's checker and interpreter would
/// for the instructions a seccomp filter may hold (ld abs, alu and, ja/jeq/jgt/jge, ret). It rejects what the
/// kernel rejects: out-of-range loads, jumps past the end, a path that falls off the end.
/// </summary>
internal static class BpfInterpreter
{
    public static uint Run(byte[] program, uint arch, uint nr, params ulong[] args)
    {
        Span<byte> data = stackalloc byte[64];
        BinaryPrimitives.WriteUInt32LittleEndian(data, nr);
        BinaryPrimitives.WriteUInt32LittleEndian(data[4..], arch);
        for (var i = 0; i < args.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data[(16 + (8 * i))..], args[i]);
        }

        var count = program.Length / 8;
        uint a = 0;
        var pc = 0;
        for (var steps = 0; steps <= count; steps++)
        {
            if (pc >= count)
            {
                throw new InvalidOperationException($"fell off the end at {pc}");
            }

            var insn = program.AsSpan(pc * 8, 8);
            var code = BinaryPrimitives.ReadUInt16LittleEndian(insn);
            var (jt, jf) = (insn[2], insn[3]);
            var k = BinaryPrimitives.ReadUInt32LittleEndian(insn[4..]);
            pc++;
            switch (code)
            {
                case 0x20:
                    if (k > 60 || k % 4 != 0)
                    {
                        throw new InvalidOperationException($"bad load offset {k}");
                    }

                    a = BinaryPrimitives.ReadUInt32LittleEndian(data[(int)k..]);
                    break;
                case 0x54:
                    a &= k;
                    break;
                case 0x05:
                    pc += (int)k;
                    break;
                case 0x15:
                    pc += a == k ? jt : jf;
                    break;
                case 0x25:
                    pc += a > k ? jt : jf;
                    break;
                case 0x35:
                    pc += a >= k ? jt : jf;
                    break;
                case 0x06:
                    return k;
                default:
                    throw new InvalidOperationException($"unexpected opcode 0x{code:x}");
            }
        }

        throw new InvalidOperationException("no return within the program's length: a backward jump?");
    }
}
