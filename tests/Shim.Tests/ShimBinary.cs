namespace ShimV2.Shim.Tests;

/// <summary>
/// The shim executable the binary tests run: CSHARP_SHIM_BINARY if set (eng/test.sh sets it to the NativeAOT shim in
/// artifacts/bin, the one operators install), else the build output's apphost.
/// </summary>
internal static class ShimBinary
{
    public static string Path { get; } = Environment.GetEnvironmentVariable("CSHARP_SHIM_BINARY") is { Length: > 0 } shim ? shim : System.IO.Path.Combine(
        AppContext.BaseDirectory, "..", "..", "..", "..", "..", "src", "containerd-shim-csharp-v1", "bin",
        System.IO.Path.GetFileName(System.IO.Path.GetDirectoryName(System.IO.Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)))!, "net10.0", "linux-x64", "containerd-shim-csharp-v1");
}
