namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>Real-QEMU tests run one at a time and apart from the rest: under TCG two guests would share 2 cores.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class QemuCollection
{
    public const string Name = "qemu";
}
