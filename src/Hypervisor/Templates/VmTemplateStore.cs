namespace ShimV2.Hypervisor.Templates;

/// <summary>A published template: the guest RAM file pods map copy-on-write and the saved device state.</summary>
public sealed record VmTemplate(VmTemplateKey Key, string Directory)
{
    public const string MemoryFileName = "memory";
    public const string StateFileName = "state";
    public const string KeyFileName = "key.txt";

    public string MemoryPath => Path.Combine(Directory, MemoryFileName);

    public string StatePath => Path.Combine(Directory, StateFileName);
}

/// <summary>
/// The templates of one host: &lt;directory&gt;/&lt;key&gt;/{memory,state,key.txt}, owner-only. A template is built in a
/// private temporary directory by the one process holding &lt;key&gt;.lock (flock, so a crashed builder's lock goes with
/// it) and published with one rename, so a reader sees a complete template or none. Templates of other keys made
/// from the same config file are removed when a new one is published (the kernel, initrd or QEMU changed), and so
/// are those whose config file is gone (a removed RuntimeClass config, a test's temporary one: each holds 60-100 MiB
/// of disk); a pod still running from one keeps its mapping of the deleted file.
/// </summary>
public sealed class VmTemplateStore
{
    internal const string BuildPrefix = ".b-";
    internal const string SourceFileName = "config-source";
    private const string LockSuffix = ".lock";
    private const string FailedSuffix = ".failed";

    public VmTemplateStore(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = directory;
    }

    public string Directory { get; }

    /// <summary>The published template for <paramref name="key"/>, or null.</summary>
    public VmTemplate? Find(VmTemplateKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var template = new VmTemplate(key, Path.Combine(Directory, key.Value));
        return File.Exists(template.MemoryPath) && File.Exists(template.StatePath) ? template : null;
    }

    /// <summary>Takes the build lock of <paramref name="key"/> without waiting and makes a temporary directory to
    /// build in; null when another process holds the lock (it is building that template now).</summary>
    /// <exception cref="HypervisorException">The store's directory cannot be made.</exception>
    public VmTemplateBuild? TryBeginBuild(VmTemplateKey key, string? configSource)
    {
        ArgumentNullException.ThrowIfNull(key);
        try
        {
            PrivateDirectory.Create(Directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HypervisorException($"cannot create the template directory {Directory}: {e.Message}", e);
        }

        var held = TryLock(key.Value);
        if (held is null)
        {
            return null;
        }

        RemoveAbandonedBuilds();

        try
        {
            // Short: the template VM's unix sockets live here (107 bytes at most).
            var work = Path.Combine(Directory, $"{BuildPrefix}{Environment.ProcessId}-{Random.Shared.Next(0x10000):x4}");
            PrivateDirectory.Create(work);
            return new VmTemplateBuild(this, key, work, held, configSource);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            held.Dispose();
            throw new HypervisorException($"cannot create a template build directory in {Directory}: {e.Message}", e);
        }
    }

    /// <summary>Why the template of <paramref name="key"/> could not be built before, when its guest stopped by
    /// itself (it cannot boot with this kernel, initrd and config, so every later try would only boot it twice);
    /// null when nothing is recorded.</summary>
    public string? BuildFailure(VmTemplateKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        try
        {
            return File.ReadAllText(Path.Combine(Directory, key.Value + FailedSuffix));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Records that the guest of <paramref name="key"/>'s template cannot boot (see <see cref="BuildFailure"/>).</summary>
    public void RecordBuildFailure(VmTemplateKey key, string reason)
    {
        ArgumentNullException.ThrowIfNull(key);
        try
        {
            File.WriteAllText(Path.Combine(Directory, key.Value + FailedSuffix), reason);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Then the next pod tries again: slower, not wrong.
        }
    }

    /// <summary>Removes <paramref name="template"/> (it failed to restore), so the next pod builds it again.</summary>
    public void Discard(VmTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        using var held = TryLock(template.Key.Value);
        if (held is null)
        {
            // Being rebuilt right now: the builder replaces it.
            return;
        }

        RemoveDirectory(template.Directory);
    }

    /// <summary>Moves a finished build into place and removes older templates of the same config file.</summary>
    internal VmTemplate Publish(VmTemplateBuild build)
    {
        var target = Path.Combine(Directory, build.Key.Value);
        File.WriteAllText(Path.Combine(build.WorkDirectory, VmTemplate.KeyFileName), build.Key.Description);
        File.WriteAllText(Path.Combine(build.WorkDirectory, SourceFileName), build.ConfigSource ?? "");

        // Under the key's lock only a leftover (an interrupted discard) can be in the way.
        RemoveDirectory(target);
        System.IO.Directory.Move(build.WorkDirectory, target);
        RemoveOthersOf(build.ConfigSource, build.Key.Value);
        return new VmTemplate(build.Key, target);
    }

    /// <summary>Removes the templates of other keys made from <paramref name="configSource"/>, and those whose config file
    /// no longer exists, that nobody is building.</summary>
    internal void RemoveOthersOf(string? configSource, string keep)
    {
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Directory))
        {
            var name = Path.GetFileName(dir);
            if (name == keep || name.StartsWith('.') || !IsKey(name))
            {
                continue;
            }

            string? source;
            try
            {
                source = File.ReadAllText(Path.Combine(dir, SourceFileName));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            var replaced = !string.IsNullOrEmpty(configSource) && source == configSource;
            if (!replaced && !ConfigFileGone(source))
            {
                continue;
            }

            using var held = TryLock(name);
            if (held is not null)
            {
                RemoveDirectory(dir);
                TryDelete(LockPath(name));
            }
        }
    }

    /// <summary>The family a template is recorded under (its config-source file): the config file's path, with its NIC
    /// count when it has NICs ("&lt;path&gt; (N NICs)"); null without a config file.</summary>
    internal static string? Family(string? configPath, int nics) =>
        nics == 0 || configPath is null ? configPath : $"{configPath} ({nics}{NicsSuffix}";

    /// <summary>Whether a template's recorded family (<see cref="Family"/>) names a config file that is no longer
    /// there; a template with no recorded file is kept.</summary>
    internal static bool ConfigFileGone(string source)
    {
        if (string.IsNullOrEmpty(source))
        {
            return false;
        }

        var nics = source.LastIndexOf(" (", StringComparison.Ordinal);
        var path = nics > 0 && source.EndsWith(NicsSuffix, StringComparison.Ordinal) ? source[..nics] : source;
        return Path.IsPathFullyQualified(path) && !File.Exists(path);
    }

    private const string NicsSuffix = " NICs)";

    /// <summary>Build directories whose builder process is gone (it crashed or was killed mid-build).</summary>
    internal void RemoveAbandonedBuilds()
    {
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Directory, BuildPrefix + "*"))
        {
            var name = Path.GetFileName(dir);
            var dash = name.IndexOf('-', BuildPrefix.Length);
            if (dash > 0 && int.TryParse(name.AsSpan(BuildPrefix.Length, dash - BuildPrefix.Length), out var pid)
                && pid != Environment.ProcessId && !System.IO.Directory.Exists($"/proc/{pid}"))
            {
                RemoveDirectory(dir);
            }
        }
    }

    internal string LockPath(string key) => Path.Combine(Directory, key + LockSuffix);

    internal static bool IsKey(string name) => name.Length == 32 && name.All(c => char.IsAsciiHexDigitLower(c) || char.IsAsciiDigit(c));

    internal static void RemoveDirectory(string path)
    {
        if (!System.IO.Directory.Exists(path))
        {
            return;
        }

        // Renamed first, so no reader finds a half-removed template under its key.
        var doomed = path + ".rm-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            System.IO.Directory.Move(path, doomed);
            System.IO.Directory.Delete(doomed, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
            // Someone else removed it.
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A lock file left behind costs nothing.
        }
    }

    /// <summary>flock(LOCK_EX|LOCK_NB) through FileShare.None (that is how .NET locks on Linux).</summary>
    private FileStream? TryLock(string key)
    {
        try
        {
            return new FileStream(LockPath(key), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            return null;
        }
    }
}

/// <summary>A template being built: its temporary directory and the key's lock, both released by <see cref="Dispose"/>
/// (the directory is removed unless it was published).</summary>
public sealed class VmTemplateBuild : IDisposable
{
    private readonly VmTemplateStore store;
    private readonly FileStream held;
    private bool published;

    internal VmTemplateBuild(VmTemplateStore store, VmTemplateKey key, string workDirectory, FileStream held, string? configSource)
    {
        this.store = store;
        this.held = held;
        Key = key;
        WorkDirectory = workDirectory;
        ConfigSource = configSource;
    }

    public VmTemplateKey Key { get; }

    /// <summary>The template VM's work directory, published as the template.</summary>
    public string WorkDirectory { get; }

    public string? ConfigSource { get; }

    public string MemoryPath => Path.Combine(WorkDirectory, VmTemplate.MemoryFileName);

    public string StatePath => Path.Combine(WorkDirectory, VmTemplate.StateFileName);

    /// <summary>An empty directory the template VM exports where a pod exports its share: same devices, same state.</summary>
    public string ShareDirectory => Path.Combine(WorkDirectory, "share");

    public VmTemplate Publish()
    {
        var template = store.Publish(this);
        published = true;
        return template;
    }

    public void Dispose()
    {
        if (!published)
        {
            VmTemplateStore.RemoveDirectory(WorkDirectory);
        }

        held.Dispose();
    }
}
