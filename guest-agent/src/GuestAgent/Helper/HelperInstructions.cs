using System.Buffers.Binary;
using System.Text;

namespace ShimV2.GuestAgent.Helper;

/// <summary>Operations of the csharp-nsexec instruction stream (guest-agent/native/csharp-nsexec.c).</summary>
internal enum HelperOp : ushort
{
    End = 0,
    Mode = 1,
    Unshare = 2,
    SetNs = 3,
    Rootfs = 4,
    RootPropagation = 5,
    Mount = 6,
    Symlink = 7,
    Mask = 8,
    Readonly = 9,
    RootReadonly = 10,
    Hostname = 11,
    Domainname = 12,
    Rlimit = 13,
    User = 14,
    Caps = 15,
    NoNewPrivs = 16,
    Cwd = 17,
    Arg = 18,
    Env = 19,
    Terminal = 20,
    Setsid = 21,
    Mkdir = 22,
    Sysctl = 23,
    OomScoreAdj = 24,
    Umask = 25,
    NoPivot = 26,
    Seccomp = 27,
}

internal enum HelperMode : uint
{
    Create = 1,
    Exec = 2,
}

/// <summary>How the helper prepares a mount's target.</summary>
internal enum MountTargetKind : uint
{
    /// <summary>A file when the bind source is not a directory, else a directory.</summary>
    Auto = 0,
    Directory = 1,
    File = 2,
}

/// <summary>One decoded record: for logs and tests.</summary>
internal sealed record HelperRecord(HelperOp Op, byte[] Payload);

/// <summary>
/// Builds the helper's instruction stream: "CSNX", u32 version, then records (u16 op, u16 0, u32 length,
/// payload) ending with <see cref="HelperOp.End"/>. Integers are little-endian; a str field is u32 length + bytes.
/// Only mechanics travel here: every decision was made by the agent.
/// </summary>
internal sealed class HelperInstructions
{
    public const uint Version = 1;
    public static ReadOnlySpan<byte> Magic => "CSNX"u8;

    private readonly List<HelperRecord> _records = [];

    public IReadOnlyList<HelperRecord> Records => _records;

    public HelperInstructions Mode(HelperMode mode) => Add(HelperOp.Mode, new Payload().U32((uint)mode));

    public HelperInstructions Unshare(uint cloneFlags) => Add(HelperOp.Unshare, new Payload().U32(cloneFlags));

    public HelperInstructions SetNs(uint nsType, string path) => Add(HelperOp.SetNs, new Payload().U32(nsType).Rest(path));

    public HelperInstructions Rootfs(string path) => Add(HelperOp.Rootfs, new Payload().Rest(path));

    public HelperInstructions RootPropagation(ulong flags) => Add(HelperOp.RootPropagation, new Payload().U32((uint)flags));

    public HelperInstructions Mount(ulong flags, ulong propagation, MountTargetKind kind, string source, string target, string fstype, string data) =>
        Add(HelperOp.Mount, new Payload().U64(flags).U32((uint)propagation).U32((uint)kind).Str(source).Str(target).Str(fstype).Str(data));

    public HelperInstructions Symlink(string target, string linkPath) => Add(HelperOp.Symlink, new Payload().Str(target).Str(linkPath));

    public HelperInstructions Mask(string path) => Add(HelperOp.Mask, new Payload().Rest(path));

    public HelperInstructions Readonly(string path) => Add(HelperOp.Readonly, new Payload().Rest(path));

    public HelperInstructions RootReadonly() => Add(HelperOp.RootReadonly, new Payload());

    public HelperInstructions Hostname(string name) => Add(HelperOp.Hostname, new Payload().Rest(name));

    public HelperInstructions Domainname(string name) => Add(HelperOp.Domainname, new Payload().Rest(name));

    public HelperInstructions Rlimit(uint resource, ulong soft, ulong hard) => Add(HelperOp.Rlimit, new Payload().U32(resource).U64(soft).U64(hard));

    public HelperInstructions User(uint uid, uint gid, IReadOnlyList<uint> additionalGids)
    {
        var p = new Payload().U32(uid).U32(gid).U32((uint)additionalGids.Count);
        foreach (var g in additionalGids)
        {
            p.U32(g);
        }

        return Add(HelperOp.User, p);
    }

    public HelperInstructions Caps(ulong bounding, ulong effective, ulong permitted, ulong inheritable, ulong ambient) =>
        Add(HelperOp.Caps, new Payload().U64(bounding).U64(effective).U64(permitted).U64(inheritable).U64(ambient));

    public HelperInstructions NoNewPrivs() => Add(HelperOp.NoNewPrivs, new Payload());

    public HelperInstructions Cwd(string path) => Add(HelperOp.Cwd, new Payload().Rest(path));

    public HelperInstructions Arg(string arg) => Add(HelperOp.Arg, new Payload().Rest(arg));

    public HelperInstructions Env(string entry) => Add(HelperOp.Env, new Payload().Rest(entry));

    public HelperInstructions Terminal() => Add(HelperOp.Terminal, new Payload());

    public HelperInstructions Setsid() => Add(HelperOp.Setsid, new Payload());

    public HelperInstructions Mkdir(uint mode, string path) => Add(HelperOp.Mkdir, new Payload().U32(mode).Rest(path));

    public HelperInstructions Sysctl(string key, string value) => Add(HelperOp.Sysctl, new Payload().Str(key).Str(value));

    public HelperInstructions OomScoreAdj(int value) => Add(HelperOp.OomScoreAdj, new Payload().U32(unchecked((uint)value)));

    public HelperInstructions Umask(uint mask) => Add(HelperOp.Umask, new Payload().U32(mask));

    public HelperInstructions NoPivot() => Add(HelperOp.NoPivot, new Payload());

    /// <summary>A seccomp filter loaded right before exec (or before privileges drop, without no_new_privs).</summary>
    public HelperInstructions Seccomp(uint flags, byte[] program) => Add(HelperOp.Seccomp, new Payload().U32(flags).Bytes(program));

    /// <summary>The encoded stream, header to End record.</summary>
    public byte[] Encode()
    {
        var size = 8 + 8 + _records.Sum(r => 8 + r.Payload.Length);
        var bytes = new byte[size];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], Version);
        var offset = 8;
        foreach (var record in _records.Append(new HelperRecord(HelperOp.End, [])))
        {
            BinaryPrimitives.WriteUInt16LittleEndian(span[offset..], (ushort)record.Op);
            BinaryPrimitives.WriteUInt16LittleEndian(span[(offset + 2)..], 0);
            BinaryPrimitives.WriteUInt32LittleEndian(span[(offset + 4)..], (uint)record.Payload.Length);
            record.Payload.CopyTo(span[(offset + 8)..]);
            offset += 8 + record.Payload.Length;
        }

        return bytes;
    }

    /// <summary>Decodes a stream made by <see cref="Encode"/> (without the End record).</summary>
    public static IReadOnlyList<HelperRecord> Decode(ReadOnlySpan<byte> stream)
    {
        if (stream.Length < 8 || !stream[..4].SequenceEqual(Magic))
        {
            throw new FormatException("not an instruction stream");
        }

        var version = BinaryPrimitives.ReadUInt32LittleEndian(stream[4..]);
        if (version != Version)
        {
            throw new FormatException($"unsupported version {version}");
        }

        var records = new List<HelperRecord>();
        var offset = 8;
        while (true)
        {
            if (stream.Length - offset < 8)
            {
                throw new FormatException("truncated record header");
            }

            var op = (HelperOp)BinaryPrimitives.ReadUInt16LittleEndian(stream[offset..]);
            var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(stream[(offset + 4)..]);
            if (stream.Length - offset - 8 < length)
            {
                throw new FormatException("truncated record payload");
            }

            if (op == HelperOp.End)
            {
                return records;
            }

            records.Add(new HelperRecord(op, stream.Slice(offset + 8, length).ToArray()));
            offset += 8 + length;
        }
    }

    /// <summary>A readable rendering of the records, for debug logs (strings shown, numbers in hex).</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        foreach (var r in _records)
        {
            if (sb.Length > 0)
            {
                sb.Append("; ");
            }

            sb.Append(r.Op);
            if (r.Op == HelperOp.Seccomp)
            {
                sb.Append(' ').Append((r.Payload.Length - 4) / 8).Append(" instructions");
            }
            else if (r.Payload.Length > 0)
            {
                sb.Append(' ').Append(r.Op is HelperOp.Arg or HelperOp.Env or HelperOp.Rootfs or HelperOp.Cwd
                    or HelperOp.Hostname or HelperOp.Mask or HelperOp.Readonly
                    ? Encoding.UTF8.GetString(r.Payload)
                    : Convert.ToHexString(r.Payload));
            }
        }

        return sb.ToString();
    }

    private HelperInstructions Add(HelperOp op, Payload payload)
    {
        _records.Add(new HelperRecord(op, payload.ToArray()));
        return this;
    }

    private sealed class Payload
    {
        private readonly List<byte> _bytes = [];

        public Payload U32(uint v)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, v);
            _bytes.AddRange(b);
            return this;
        }

        public Payload U64(ulong v)
        {
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, v);
            _bytes.AddRange(b);
            return this;
        }

        public Payload Str(string s)
        {
            var bytes = Checked(s);
            U32((uint)bytes.Length);
            _bytes.AddRange(bytes);
            return this;
        }

        public Payload Rest(string s)
        {
            _bytes.AddRange(Checked(s));
            return this;
        }

        public Payload Bytes(byte[] bytes)
        {
            _bytes.AddRange(bytes);
            return this;
        }

        public byte[] ToArray() => [.. _bytes];

        private static byte[] Checked(string s)
        {
            if (s.Contains('\0', StringComparison.Ordinal))
            {
                throw AgentException.InvalidArgument($"string contains a NUL character: \"{s.Replace("\0", "\\0", StringComparison.Ordinal)}\"");
            }

            return Encoding.UTF8.GetBytes(s);
        }
    }
}
