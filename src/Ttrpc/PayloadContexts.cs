using System.Buffers;
using Grpc.Core;

namespace ShimV2.Ttrpc;

/// <summary>
/// A message's bytes as Grpc.Core marshallers read them. The generated marshallers parse from the sequence, so a
/// payload is read where it lies, not copied first.
/// </summary>
internal sealed class PayloadDeserializationContext(ReadOnlyMemory<byte> payload) : DeserializationContext
{
    public override int PayloadLength => payload.Length;

    public override byte[] PayloadAsNewBuffer() => payload.ToArray();

    public override ReadOnlySequence<byte> PayloadAsReadOnlySequence() => new(payload);
}

/// <summary>Collects what a Grpc.Core marshaller writes.</summary>
internal sealed class PayloadSerializationContext : SerializationContext
{
    private ArrayBufferWriter<byte>? _writer;
    private byte[]? _payload;

    /// <summary>The bytes written, once the marshaller completed.</summary>
    public ReadOnlyMemory<byte> Payload =>
        _payload ?? _writer?.WrittenMemory ?? throw new InvalidOperationException("the marshaller did not complete the payload");

    public override void Complete(byte[] payload) => _payload = payload;

    public override IBufferWriter<byte> GetBufferWriter() => _writer ??= new ArrayBufferWriter<byte>();

    public override void SetPayloadLength(int payloadLength) => _writer ??= new ArrayBufferWriter<byte>(Math.Max(1, payloadLength));

    public override void Complete()
    {
        _writer ??= new ArrayBufferWriter<byte>(1);
    }
}
