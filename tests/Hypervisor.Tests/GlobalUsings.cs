global using ShimV2.Hypervisor.Tests.Support;
global using Xunit;

// QEMU, unix sockets and /proc: these tests run on Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
