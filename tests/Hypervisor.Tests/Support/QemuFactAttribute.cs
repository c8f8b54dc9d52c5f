namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>A test that boots real QEMU (TCG is enough); skipped with the reason when the host lacks
/// qemu, a kernel with modules, busybox-static or cpio.</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    public QemuFactAttribute()
    {
        if (GuestImage.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}
