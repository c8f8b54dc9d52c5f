using System.Buffers.Binary;

namespace ShimV2.GuestAgent.Transport;

/// <summary>
/// Follows the TTRPC frames the host sends over a virtio-serial port and spots a new client. The port gives no
/// reliable end of stream when the host disconnects and reconnects quickly (the guest may never see the port
/// closed), but a TTRPC client numbers its requests 1, 3, 5, ...: a request whose stream id does not increase
/// starts a new connection. Bytes are handed out only after the frame header they belong to was checked; from
/// the new client's first header on, the bytes are kept as <see cref="CarryOver"/> for the next connection.
/// </summary>
internal sealed class FrameSplitter
{
    public const int HeaderSize = 10;
    private const byte RequestType = 1;

    private byte[] _raw;
    private int _rawStart;
    private int _rawEnd;
    private readonly byte[] _header = new byte[HeaderSize];
    private int _headerOut = HeaderSize; // bytes of the checked header not handed out yet start here
    private long _payloadLeft;
    private uint _lastRequest;

    public FrameSplitter(ReadOnlySpan<byte> carryOver = default)
    {
        _raw = new byte[Math.Max(4096, carryOver.Length)];
        carryOver.CopyTo(_raw);
        _rawEnd = carryOver.Length;
    }

    /// <summary>A request with a stream id that did not increase arrived: the current connection is over.</summary>
    public bool NewClient { get; private set; }

    /// <summary>What the next connection starts with (once <see cref="NewClient"/>).</summary>
    public byte[] CarryOver => _raw.AsSpan(_rawStart, _rawEnd - _rawStart).ToArray();

    /// <summary>Whether bytes are buffered that <see cref="Take"/> may hand out without more input.</summary>
    public bool HasBuffered => _headerOut < HeaderSize || _rawEnd > _rawStart;

    /// <summary>
    /// Payload bytes of the current frame that may be read from the port straight into the reader's buffer:
    /// nothing is buffered ahead of them, so they need no checking (0 when a header comes next).
    /// </summary>
    public int DirectPayload =>
        !NewClient && _headerOut == HeaderSize && _rawStart == _rawEnd ? (int)Math.Min(_payloadLeft, int.MaxValue) : 0;

    /// <summary>The reader read n of the <see cref="DirectPayload"/> bytes itself.</summary>
    public void ConsumedDirect(int n) => _payloadLeft -= n;

    /// <summary>Adds bytes read from the port.</summary>
    public void Feed(ReadOnlySpan<byte> data)
    {
        data.CopyTo(FeedBuffer(data.Length));
        Advance(data.Length);
    }

    /// <summary>Room for at least size bytes of input, to read into before <see cref="Advance"/>.</summary>
    public Span<byte> FeedBuffer(int size)
    {
        if (_rawEnd + size > _raw.Length)
        {
            var live = _rawEnd - _rawStart;
            var bigger = live + size > _raw.Length ? new byte[Math.Max(_raw.Length * 2, live + size)] : _raw;
            Buffer.BlockCopy(_raw, _rawStart, bigger, 0, live);
            _raw = bigger;
            _rawStart = 0;
            _rawEnd = live;
        }

        return _raw.AsSpan(_rawEnd);
    }

    /// <summary>n bytes were read into <see cref="FeedBuffer"/>.</summary>
    public void Advance(int n) => _rawEnd += n;

    /// <summary>Copies checked bytes into destination; 0 when more input is needed or a new client began.</summary>
    public int Take(Span<byte> destination)
    {
        var written = 0;
        while (written < destination.Length && !NewClient)
        {
            if (_headerOut < HeaderSize)
            {
                var n = Math.Min(HeaderSize - _headerOut, destination.Length - written);
                _header.AsSpan(_headerOut, n).CopyTo(destination[written..]);
                _headerOut += n;
                written += n;
                continue;
            }

            var available = _rawEnd - _rawStart;
            if (_payloadLeft > 0)
            {
                if (available == 0)
                {
                    break;
                }

                var n = (int)Math.Min(Math.Min(_payloadLeft, available), destination.Length - written);
                _raw.AsSpan(_rawStart, n).CopyTo(destination[written..]);
                _rawStart += n;
                _payloadLeft -= n;
                written += n;
                continue;
            }

            if (available < HeaderSize)
            {
                break;
            }

            var header = _raw.AsSpan(_rawStart, HeaderSize);
            var length = BinaryPrimitives.ReadUInt32BigEndian(header);
            var stream = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
            if (header[8] == RequestType)
            {
                if (stream <= _lastRequest)
                {
                    NewClient = true;
                    break;
                }

                _lastRequest = stream;
            }

            header.CopyTo(_header);
            _rawStart += HeaderSize;
            _headerOut = 0;
            _payloadLeft = length;
        }

        if (_rawStart == _rawEnd)
        {
            _rawStart = _rawEnd = 0;
        }

        return written;
    }
}
