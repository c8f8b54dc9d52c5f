global using Xunit;

// Namespaces, ptys, /proc: these tests run on Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

// The VM tests boot QEMU under TCG on a 2-core machine: one VM at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
