namespace ShimV2.Hypervisor.Templates;

/// <summary>
/// The NICs of a template VM. A template is made per NIC count (design (b) of issue 11: the template's command
/// line already has the pod's virtio-net devices; Kata instead hot-plugs them into empty PCIe root ports after the
/// restore). Chosen because it needs no guest PCIe hotplug (our kernel config, the i440fx machine), no QMP fd
/// passing and no wait for a hot-plugged device, and the restored NIC is ready the moment the guest runs: the
/// restoring QEMU opens the pod's taps under the same netdev ids, and the agent gives each guest NIC the pod's MAC
/// by netlink (the migrated virtio-net state carries the template's MAC; the driver passes the new one to QEMU
/// over its control queue). The cost is one template per NIC count (a pod network nearly always has one).
/// </summary>
internal static class TemplateNics
{
    /// <summary>Locally administered and the same in every template, so the agent finds a restored NIC by it.</summary>
    public static string Mac(int index) => $"02:c5:00:00:00:{index:x2}";

    /// <summary>The template VM's taps (in the first pod's network namespace, gone with the template's QEMU); not
    /// the shim's names (tapN_cs), which that pod's own QEMU makes later.</summary>
    public static string TapName(int index) => $"cstpl{index}";

    public static IReadOnlyList<VmNic> ForTemplate(int count) => [.. Enumerable.Range(0, count).Select(i => new VmNic(TapName(i), Mac(i)))];

    /// <summary>The pod's taps behind the template's MACs: a restored QEMU has the template's devices.</summary>
    public static IReadOnlyList<VmNic> ForRestore(IReadOnlyList<VmNic> nics) => [.. nics.Select((n, i) => n with { Mac = Mac(i) })];
}
