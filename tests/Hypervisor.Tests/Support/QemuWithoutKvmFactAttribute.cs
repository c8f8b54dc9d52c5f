namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>A real-QEMU test that needs QEMU to fail with accel=kvm: skipped, saying so, on a host with /dev/kvm.</summary>
public sealed class QemuWithoutKvmFactAttribute : FactAttribute
{
    public QemuWithoutKvmFactAttribute()
    {
        if (GuestImage.SkipReason is { } reason)
        {
            Skip = reason;
        }
        else if (File.Exists(HostProbe.KvmDevice))
        {
            Skip = $"this host has {HostProbe.KvmDevice}: QEMU may start with accel=kvm, and this test needs it to fail";
        }
    }
}
