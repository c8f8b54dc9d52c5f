namespace ShimV2.EndToEnd.Tests.Support;

/// <summary>What KVM this test host has: on machines whose /dev/kvm is PVM-only (kvm_pvm, no kvm_intel/kvm_amd)
/// the runtime must say so and use TCG.</summary>
internal static class KvmHost
{
    public static bool IsPvmOnly =>
        File.Exists("/dev/kvm") && Directory.Exists("/sys/module/kvm_pvm")
        && !Directory.Exists("/sys/module/kvm_intel") && !Directory.Exists("/sys/module/kvm_amd");
}
