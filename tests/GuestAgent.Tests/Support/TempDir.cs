namespace ShimV2.GuestAgent.Tests.Support;

/// <summary>A temporary directory removed at dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() => Path = Directory.CreateTempSubdirectory("gat-unit-").FullName;

    public string Path { get; }

    public string Make(string relative, string? content = null)
    {
        var full = System.IO.Path.Combine(Path, relative);
        if (content == null)
        {
            Directory.CreateDirectory(full);
        }
        else
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
            File.WriteAllText(full, content);
        }

        return full;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
