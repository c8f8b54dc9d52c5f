using System.Buffers.Binary;
using System.Text;
using ShimV2.GuestAgent.Helper;

namespace ShimV2.GuestAgent.Tests.Support;

/// <summary>Reads the payloads of helper instructions as csharp-nsexec.c does.</summary>
internal sealed class PayloadReader(byte[] payload)
{
    private int _offset;

    public bool AtEnd => _offset == payload.Length;

    public uint U32()
    {
        var v = BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(_offset));
        _offset += 4;
        return v;
    }

    public ulong U64()
    {
        var v = BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(_offset));
        _offset += 8;
        return v;
    }

    public string Str()
    {
        var n = (int)U32();
        var s = Encoding.UTF8.GetString(payload, _offset, n);
        _offset += n;
        return s;
    }

    public string Rest()
    {
        var s = Encoding.UTF8.GetString(payload, _offset, payload.Length - _offset);
        _offset = payload.Length;
        return s;
    }
}

/// <summary>A decoded OP_MOUNT.</summary>
internal sealed record MountRecord(ulong Flags, ulong Propagation, MountTargetKind Kind, string Source, string Target, string FsType, string Data);

internal static class Records
{
    /// <summary>The records of an encoded stream (round trip through the wire format).</summary>
    public static IReadOnlyList<HelperRecord> Of(HelperInstructions instructions) => HelperInstructions.Decode(instructions.Encode());

    public static IEnumerable<string> Strings(this IEnumerable<HelperRecord> records, HelperOp op) =>
        records.Where(r => r.Op == op).Select(r => new PayloadReader(r.Payload).Rest());

    public static IEnumerable<MountRecord> Mounts(this IEnumerable<HelperRecord> records) =>
        records.Where(r => r.Op == HelperOp.Mount).Select(r =>
        {
            var p = new PayloadReader(r.Payload);
            var m = new MountRecord(p.U64(), p.U32(), (MountTargetKind)p.U32(), p.Str(), p.Str(), p.Str(), p.Str());
            Assert.True(p.AtEnd);
            return m;
        });

    public static uint U32Of(this IEnumerable<HelperRecord> records, HelperOp op) =>
        new PayloadReader(records.Single(r => r.Op == op).Payload).U32();
}
