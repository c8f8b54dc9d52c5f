using System.Text.Json;

namespace ShimV2.Hypervisor;

internal enum QmpMessageKind
{
    /// <summary>Not a JSON object, or an object that is none of the kinds below.</summary>
    Unparsable,
    Event,
    Return,
    Error,
}

/// <summary>
/// One line QEMU sent on the QMP socket, read without trusting its shape: a member of the wrong JSON type reads as
/// absent, so a malformed line is logged and skipped instead of ending the connection.
/// </summary>
internal sealed record QmpMessage(QmpMessageKind Kind, long? Id, QmpEvent? Event, JsonElement Return, string ErrorClass, string ErrorDesc)
{
    private static readonly QmpMessage Unparsable = new(QmpMessageKind.Unparsable, null, null, default, "", "");

    public static QmpMessage Parse(string line)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException)
        {
            return Unparsable;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Unparsable;
            }

            if (root.TryGetProperty("event", out var eventName))
            {
                if (eventName.ValueKind != JsonValueKind.String)
                {
                    return Unparsable;
                }

                var data = root.TryGetProperty("data", out var d) ? d.Clone() : default;
                return new QmpMessage(QmpMessageKind.Event, null, new QmpEvent(eventName.GetString()!, data, ReadTimestamp(root)), default, "", "");
            }

            long? id = root.TryGetProperty("id", out var idElement) && idElement.ValueKind == JsonValueKind.Number
                && idElement.TryGetInt64(out var n) ? n : null;
            if (root.TryGetProperty("return", out var result))
            {
                return new QmpMessage(QmpMessageKind.Return, id, null, result.Clone(), "", "");
            }

            if (root.TryGetProperty("error", out var error))
            {
                return new QmpMessage(QmpMessageKind.Error, id, null, default, StringMember(error, "class"), StringMember(error, "desc"));
            }

            return Unparsable with { Id = id };
        }
    }

    private static string StringMember(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : "";

    /// <summary>QEMU's event time; the time of reading when it is absent or out of range.</summary>
    private static DateTimeOffset ReadTimestamp(JsonElement root)
    {
        if (root.TryGetProperty("timestamp", out var ts) && ts.ValueKind == JsonValueKind.Object
            && ts.TryGetProperty("seconds", out var s) && s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out var seconds)
            && Microseconds(ts) is { } micros
            && seconds is >= 0 and <= MaxUnixSeconds && micros is >= 0 and < 1_000_000)
        {
            return DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(micros * 10);
        }

        return DateTimeOffset.UtcNow;
    }

    private static long? Microseconds(JsonElement ts)
    {
        if (!ts.TryGetProperty("microseconds", out var u))
        {
            return 0;
        }

        return u.ValueKind == JsonValueKind.Number && u.TryGetInt64(out var micros) ? micros : null;
    }

    /// <summary>DateTimeOffset's last whole second (year 9999).</summary>
    private const long MaxUnixSeconds = 253_402_300_798;
}
