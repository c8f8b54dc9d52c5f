using System.Text;
using ShimV2.Hypervisor;

namespace ShimV2.Fuzz;

/// <summary>
/// What QEMU sends on the QMP socket, one line at a time: the greeting, replies and events, and each command's
/// return value read into its typed result.
/// </summary>
internal static class QmpTargets
{
    private static readonly Func<System.Text.Json.JsonElement, object?>[] Results =
    [
        r => new QueryStatus().ReadResult(r),
        r => new QueryHotpluggableCpus().ReadResult(r),
        r => new QueryCpusFast().ReadResult(r),
        r => new QueryMemoryDevices().ReadResult(r),
        r => new QueryMemorySizeSummary().ReadResult(r),
        r => new QueryMigrate().ReadResult(r),
    ];

    public static void Messages(ReadOnlySpan<byte> data)
    {
        var text = Encoding.UTF8.GetString(data);
        var first = true;
        foreach (var line in text.Split('\n'))
        {
            if (first)
            {
                first = false;
                try
                {
                    QmpClient.ParseGreeting(line.TrimEnd('\r'));
                }
                catch (HypervisorException)
                {
                }
            }

            var message = QmpMessage.Parse(line);
            if (message.Kind != QmpMessageKind.Return)
            {
                _ = message.Event?.HasData;
                continue;
            }

            foreach (var read in Results)
            {
                try
                {
                    read(message.Return);
                }
                catch (HypervisorException)
                {
                }
            }
        }
    }
}
