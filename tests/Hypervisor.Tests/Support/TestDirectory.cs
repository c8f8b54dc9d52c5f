namespace ShimV2.Hypervisor.Tests.Support;

/// <summary>A short-pathed temporary directory (unix socket paths are limited to 107 bytes), deleted on dispose.</summary>
public sealed class TestDirectory : IDisposable
{
    public TestDirectory(string prefix = "hvt")
    {
        Path = Directory.CreateTempSubdirectory(prefix + "-").FullName;
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public string File(string name, string content)
    {
        var path = Combine(name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, content);
        return path;
    }

    /// <summary>Writes an executable shell script.</summary>
    public string Script(string name, string body)
    {
        var path = File(name, "#!/bin/sh\n" + body + "\n");
        System.IO.File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }
}
