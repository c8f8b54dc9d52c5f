global using ShimV2.EndToEnd.Tests.Support;
global using Xunit;
global using Xunit.Abstractions;

// containerd, ctr, /proc, ptys: Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
