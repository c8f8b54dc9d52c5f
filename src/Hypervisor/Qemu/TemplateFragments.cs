namespace ShimV2.Hypervisor.Qemu;

/// <summary>
/// Boot RAM in a VM template's memory file. The template VM maps it shared (<paramref name="Shared"/>), so what the
/// guest wrote is in the file when it is saved; a pod restored from the template maps the same file private
/// (copy-on-write): its pages stay shared with every other pod of that template until the guest writes them, and
/// nothing a pod writes reaches the file. Same id in both, so the migration stream names the same RAM block.
/// </summary>
internal sealed record TemplateMemoryFragment(string MemoryPath, bool Shared, int MemoryMiB) : QemuFragment
{
    public const string BackendId = "tplram0";

    public override IReadOnlyList<string> Args =>
    [
        "-object", $"memory-backend-file,id={BackendId},mem-path={Opt(MemoryPath)},share={(Shared ? "on" : "off")},size={N(MemoryMiB)}M",
        "-machine", $"memory-backend={BackendId}",
    ];
}

/// <summary>Starts QEMU waiting for a migration stream (migrate-incoming over QMP) instead of booting the guest.</summary>
internal sealed record IncomingDeferFragment : QemuFragment
{
    public override IReadOnlyList<string> Args => ["-incoming", "defer"];
}
