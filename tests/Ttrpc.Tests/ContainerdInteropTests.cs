using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Containerd.Events;
using Containerd.Services.Events.Ttrpc.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Xunit.Abstractions;

namespace ShimV2.Ttrpc.Tests;

/// <summary>
/// Our client against containerd's own TTRPC server (the one shims publish events to): a private containerd on
/// a temp dir, never the system one.
/// </summary>
public sealed class ContainerdInteropTests(ITestOutputHelper output)
{
    private const string EventsService = "containerd.services.events.ttrpc.v1.Events";
    private const string ContainerId = "ttrpc-interop";
    private static readonly TtrpcCallOptions CallOptions = new() { Timeout = TimeSpan.FromSeconds(5) };

    [RequiresContainerdFact]
    public async Task Forward_publishes_a_TaskExit_that_ctr_events_shows()
    {
        await using var containerd = await PrivateContainerd.StartAsync(output);
        await using var events = containerd.StartEvents();
        await using var client = await TtrpcClient.ConnectUnixAsync(containerd.TtrpcAddress, new XunitLogger(output));

        // ctr events prints nothing when it has subscribed: publish until our event shows up.
        var deadline = Stopwatch.StartNew();
        string? line = null;
        for (var attempt = 1; line is null; attempt++)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(20),
                $"ctr events did not show the event after {attempt - 1} successful Forward calls");
            var empty = await client.CallAsync<ForwardRequest, Empty>(EventsService, "Forward", TaskExitRequest("default"), CallOptions);
            Assert.Equal(new Empty(), empty);
            line = await events.NextLineAsync(l => l.Contains(ContainerId, StringComparison.Ordinal), TimeSpan.FromMilliseconds(250));
            output.WriteLine($"Forward #{attempt} succeeded; ctr events: {line ?? "(nothing yet)"}");
        }

        // e.g. "2024-01-01 00:00:00.000000001 +0000 UTC default /tasks/exit {"container_id":"ttrpc-interop",...}"
        Assert.Contains(" default /tasks/exit {", line, StringComparison.Ordinal);
        Assert.Contains($"\"container_id\":\"{ContainerId}\"", line, StringComparison.Ordinal);
        Assert.Contains($"\"id\":\"{ContainerId}\"", line, StringComparison.Ordinal);
        Assert.Contains("\"pid\":4242", line, StringComparison.Ordinal);
        Assert.Contains("\"exit_status\":7", line, StringComparison.Ordinal);
    }

    [RequiresContainerdFact]
    public async Task Unknown_methods_and_services_are_Unimplemented()
    {
        await using var containerd = await PrivateContainerd.StartAsync(output);
        await using var client = await TtrpcClient.ConnectUnixAsync(containerd.TtrpcAddress, new XunitLogger(output));

        var method = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<ForwardRequest, Empty>(EventsService, "Nope", new ForwardRequest(), CallOptions));
        output.WriteLine($"unknown method: {method.Code}: {method.Message}");
        Assert.Equal(TtrpcStatusCode.Unimplemented, method.Code);
        Assert.Equal("method Nope", method.Message);

        var service = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<ForwardRequest, Empty>("no.such.Service", "Forward", new ForwardRequest(), CallOptions));
        output.WriteLine($"unknown service: {service.Code}: {service.Message}");
        Assert.Equal(TtrpcStatusCode.Unimplemented, service.Code);
        Assert.Equal("service no.such.Service", service.Message);

        // The connection survives both errors.
        await client.CallAsync<ForwardRequest, Empty>(EventsService, "Forward", TaskExitRequest("default"), CallOptions);
    }

    [RequiresContainerdFact]
    public async Task An_invalid_envelope_is_answered_with_containerds_error_status()
    {
        await using var containerd = await PrivateContainerd.StartAsync(output);
        await using var client = await TtrpcClient.ConnectUnixAsync(containerd.TtrpcAddress, new XunitLogger(output));

        var error = await Assert.ThrowsAsync<TtrpcException>(() =>
            client.CallAsync<ForwardRequest, Empty>(EventsService, "Forward", TaskExitRequest("Not A Namespace!"), CallOptions));
        output.WriteLine($"invalid namespace: {error.Code}: {error.Message}");
        Assert.Equal(TtrpcStatusCode.InvalidArgument, error.Code);
        // containerd 1.6.20: event envelope has invalid namespace: identifier "..." must match ^...$: invalid argument
        Assert.Contains("invalid namespace", error.Message, StringComparison.Ordinal);
        Assert.Contains("\"Not A Namespace!\"", error.Message, StringComparison.Ordinal);
        Assert.EndsWith(": invalid argument", error.Message, StringComparison.Ordinal);

        await client.CallAsync<ForwardRequest, Empty>(EventsService, "Forward", TaskExitRequest("default"), CallOptions);
    }

    /// <summary>A TaskExit as shims send it: Any type URL without the type.googleapis.com/ prefix.</summary>
    private static ForwardRequest TaskExitRequest(string ns)
    {
        var now = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow);
        var exit = new TaskExit { ContainerId = ContainerId, Id = ContainerId, Pid = 4242, ExitStatus = 7, ExitedAt = now };
        return new ForwardRequest
        {
            Envelope = new Envelope
            {
                Timestamp = now,
                Namespace = ns,
                Topic = "/tasks/exit",
                Event = new Any { TypeUrl = "containerd.events.TaskExit", Value = exit.ToByteString() },
            },
        };
    }
}

/// <summary>A [Fact] that skips, saying why, when containerd cannot be run here.</summary>
public sealed class RequiresContainerdFactAttribute : FactAttribute
{
    public RequiresContainerdFactAttribute()
    {
        if (PrivateContainerd.Unavailable() is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>
/// containerd on its own root, state and sockets under /tmp/csharp-ctrd.XXXXXX. The dir holds containerd.pid and
/// owner.pid, so eng/test.sh's containerd_reap_stale cleans up after a killed test host.
/// </summary>
public sealed class PrivateContainerd : IAsyncDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly DirectoryInfo _dir;
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly List<CtrEvents> _events = [];

    private PrivateContainerd(ITestOutputHelper output, DirectoryInfo dir, Process process)
    {
        _output = output;
        _dir = dir;
        _process = process;
        GrpcAddress = Path.Combine(dir.FullName, "containerd.sock");
    }

    public string GrpcAddress { get; }

    /// <summary>containerd serves TTRPC on the gRPC address + ".ttrpc" (what shims get as TTRPC_ADDRESS).</summary>
    public string TtrpcAddress => GrpcAddress + ".ttrpc";

    /// <summary>Why the interop tests cannot run here, or null.</summary>
    public static string? Unavailable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "containerd interop tests need Linux";
        }

        if (Find("containerd") is null || Find("ctr") is null)
        {
            return "containerd is not installed (/usr/bin/containerd and ctr; eng/lib/deps.sh installs Debian's package)";
        }

        return Environment.IsPrivilegedProcess
            ? null
            : "containerd interop tests need root (containerd runs as root and its ttrpc socket only accepts its own uid)";
    }

    public static async Task<PrivateContainerd> StartAsync(ITestOutputHelper output)
    {
        var dir = Directory.CreateTempSubdirectory("csharp-ctrd.");
        var d = dir.FullName;
        var config = Path.Combine(d, "config.toml");
        await File.WriteAllTextAsync(config, $"""
            version = 2
            root = "{d}/root"
            state = "{d}/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]

            [grpc]
              address = "{d}/containerd.sock"

            # Empty: containerd serves ttrpc on the grpc address + ".ttrpc".
            [ttrpc]
              address = ""

            [debug]
              address = ""
              level = "info"

            [metrics]
              address = ""

            [plugins."io.containerd.internal.v1.opt"]
              path = "{d}/opt"

            """);
        await File.WriteAllTextAsync(Path.Combine(d, "owner.pid"), $"{Environment.ProcessId}\n");

        var start = new ProcessStartInfo(Find("containerd")!)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--config");
        start.ArgumentList.Add(config);
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var containerd = new PrivateContainerd(output, dir, process);
        var booted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not { } line)
            {
                return;
            }

            containerd._log.Enqueue(line);
            if (line.Contains("containerd successfully booted", StringComparison.Ordinal))
            {
                booted.TrySetResult();
            }
        };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                containerd._log.Enqueue(line);
            }
        };
        process.Exited += (_, _) => booted.TrySetException(new InvalidOperationException("containerd exited during start-up"));
        try
        {
            process.Start();
            process.StandardInput.Close();
            await File.WriteAllTextAsync(Path.Combine(d, "containerd.pid"), $"{process.Id}\n");
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();
            await booted.Task.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(File.Exists(containerd.TtrpcAddress), $"containerd booted without {containerd.TtrpcAddress}");
            output.WriteLine($"containerd {process.Id} serving ttrpc on {containerd.TtrpcAddress}");
            return containerd;
        }
        catch
        {
            await containerd.DisposeAsync(); // prints the log
            throw;
        }
    }

    /// <summary>Starts <c>ctr events</c> against this containerd; stopped on dispose.</summary>
    public CtrEvents StartEvents()
    {
        var events = CtrEvents.Start(GrpcAddress);
        _events.Add(events);
        return events;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var events in _events)
        {
            await events.DisposeAsync();
        }

        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
            // InvalidOperationException: the process never started.
            _output.WriteLine($"stopping containerd: {e.Message}");
        }
        finally
        {
            _process.Dispose();
        }

        foreach (var line in _log.TakeLast(30))
        {
            _output.WriteLine("containerd: " + line);
        }

        try
        {
            _dir.Delete(recursive: true);
        }
        catch (IOException e)
        {
            _output.WriteLine($"could not remove {_dir.FullName}: {e.Message}");
        }
    }

    private static string? Find(string name)
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        return dirs.Append("/usr/bin").Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
    }

    /// <summary>A running <c>ctr events</c>: its output lines, in order.</summary>
    public sealed class CtrEvents : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

        private CtrEvents(Process process) => _process = process;

        public static CtrEvents Start(string address)
        {
            var start = new ProcessStartInfo(Find("ctr")!)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add("--address");
            start.ArgumentList.Add(address);
            start.ArgumentList.Add("events");
            var process = new Process { StartInfo = start };
            var events = new CtrEvents(process);
            process.OutputDataReceived += (_, e) => Publish(events, e.Data);
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is { } line)
                {
                    Publish(events, "stderr: " + line);
                }
            };
            process.Start();
            process.StandardInput.Close();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return events;
        }

        /// <summary>The next line matching <paramref name="match"/> within <paramref name="wait"/>, or null.</summary>
        public async Task<string?> NextLineAsync(Func<string, bool> match, TimeSpan wait)
        {
            using var timeout = new CancellationTokenSource(wait);
            try
            {
                while (true)
                {
                    var line = await _lines.Reader.ReadAsync(timeout.Token);
                    Assert.False(line.StartsWith("stderr: ", StringComparison.Ordinal), $"ctr events failed: {line}");
                    if (match(line))
                    {
                        return line;
                    }
                }
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                return null;
            }
            catch (ChannelClosedException)
            {
                throw new InvalidOperationException($"ctr events exited ({ExitCode()})");
            }
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill();
                }

                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
            {
                // Already gone, or never started.
            }
            finally
            {
                _process.Dispose();
            }
        }

        private static void Publish(CtrEvents events, string? line)
        {
            if (line is null)
            {
                events._lines.Writer.TryComplete();
            }
            else
            {
                events._lines.Writer.TryWrite(line);
            }
        }

        private string ExitCode() => _process.HasExited ? $"exit code {_process.ExitCode}" : "still running";
    }
}
