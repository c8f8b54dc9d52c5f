using System.Diagnostics;

namespace ShimV2.Hypervisor.Tests;

/// <summary>How `delete` after a dead shim recognises its VM's QEMU (never a stranger with a reused pid) and stops it.</summary>
public sealed class OrphanedQemuTests : IDisposable
{
    private const int Pid = 4321;
    private const string VmDir = "/run/containerd-shim-csharp/pod-a/vm";
    private const string Qemu = "/usr/bin/qemu-system-x86_64";

    private readonly string _proc = Directory.CreateTempSubdirectory("fake-proc-").FullName;

    public void Dispose() => Directory.Delete(_proc, recursive: true);

    [Fact]
    public void Stat_fields_are_counted_after_the_last_parenthesis_of_the_command_name()
    {
        var stat = ProcStat.Parse(StatLine("qemu) (x y", 'S', 987654));

        Assert.Equal(new ProcStat(false, 987654), stat);
        Assert.True(ProcStat.Parse(StatLine("qemu", 'Z', 1))!.Value.Zombie);
        Assert.Null(ProcStat.Parse("garbage"));
    }

    [Fact]
    public void The_recorded_qemu_with_the_same_start_time_and_executable_is_this_VMs()
    {
        FakeProcess(Pid, Qemu, 1000, "-name", "pod-a", "-pidfile", VmDir + "/qemu.pid");

        Assert.True(OrphanedQemu.IsThisVmsQemu(Pid, VmDir, new QemuIdentity(Pid, 1000, Qemu), _proc));
    }

    [Theory]
    [InlineData(1001, Qemu, VmDir + "/qemu.pid", 'S')]  // the pid was reused by a later process
    [InlineData(1000, "/usr/bin/sleep", VmDir + "/qemu.pid", 'S')]  // another executable
    [InlineData(1000, Qemu, "/run/containerd-shim-csharp/pod-b/vm/qemu.pid", 'S')]  // another pod's QEMU
    [InlineData(1000, Qemu, VmDir + "/qemu.pid", 'Z')]  // already dead, waiting to be reaped
    public void Anything_else_under_that_pid_is_not(ulong startTime, string exe, string pidFileArgument, char state)
    {
        FakeProcess(Pid, exe, startTime, ["-pidfile", pidFileArgument], state);

        Assert.False(OrphanedQemu.IsThisVmsQemu(Pid, VmDir, new QemuIdentity(Pid, 1000, Qemu), _proc));
    }

    [Fact]
    public void Without_a_record_the_command_line_and_a_qemu_system_executable_must_both_match()
    {
        FakeProcess(Pid, Qemu, 5, "-pidfile", VmDir + "/qemu.pid");
        FakeProcess(Pid + 1, "/bin/sh", 5, "-c", "x", "-pidfile", VmDir + "/qemu.pid");
        FakeProcess(Pid + 2, Qemu, 5, "-pidfile" + VmDir + "/qemu.pid");

        Assert.True(OrphanedQemu.IsThisVmsQemu(Pid, VmDir, null, _proc));
        Assert.False(OrphanedQemu.IsThisVmsQemu(Pid + 1, VmDir, null, _proc));
        Assert.False(OrphanedQemu.IsThisVmsQemu(Pid + 2, VmDir, null, _proc));
        Assert.False(OrphanedQemu.IsThisVmsQemu(Pid + 3, VmDir, null, _proc));
    }

    [Fact]
    public void Find_reads_the_pid_file_and_the_identity_record_beside_it()
    {
        var vm = Directory.CreateDirectory(Path.Combine(_proc, "vm")).FullName;
        FakeProcess(Pid, Qemu, 77, "-pidfile", Path.Combine(vm, "qemu.pid"));
        File.WriteAllText(Path.Combine(vm, "qemu.pid"), $"{Pid}\n");
        new QemuIdentity(Pid, 77, Qemu).Write(Path.Combine(vm, QemuIdentity.FileName));
        Assert.Equal(Pid, OrphanedQemu.Find(vm, _proc));
        Assert.Equal(new QemuIdentity(Pid, 77, Qemu), QemuIdentity.Read(Path.Combine(vm, QemuIdentity.FileName)));

        new QemuIdentity(Pid, 78, Qemu).Write(Path.Combine(vm, QemuIdentity.FileName));
        Assert.Null(OrphanedQemu.Find(vm, _proc));

        File.WriteAllText(Path.Combine(vm, "qemu.pid"), "not a pid");
        Assert.Equal(Pid, OrphanedQemu.Find(vm, _proc));
    }

    [Fact]
    public void Before_qemu_wrote_its_pid_file_the_recorded_identity_or_the_command_line_finds_it()
    {
        var vm = Directory.CreateDirectory(Path.Combine(_proc, "vm")).FullName;
        FakeProcess(Pid + 7, Qemu, 9, "-pidfile", Path.Combine(vm, "qemu.pid"));
        FakeProcess(Pid + 8, Qemu, 9, "-pidfile", "/elsewhere/vm/qemu.pid");

        Assert.Equal(Pid + 7, OrphanedQemu.Find(vm, _proc));

        new QemuIdentity(Pid + 7, 9, Qemu).Write(Path.Combine(vm, QemuIdentity.FileName));
        Assert.Equal(Pid + 7, OrphanedQemu.Find(vm, _proc));

        Directory.Delete(Path.Combine(_proc, (Pid + 7).ToString(System.Globalization.CultureInfo.InvariantCulture)), recursive: true);
        Assert.Null(OrphanedQemu.Find(vm, _proc));
    }

    [Fact]
    public void A_real_process_is_captured_with_its_start_time_and_executable()
    {
        using var child = Start("/bin/sleep", "1000");
        try
        {
            var identity = QemuIdentity.Capture(child.Id);
            Assert.NotNull(identity);
            Assert.Equal(ProcStat.Read(child.Id)!.Value.StartTime, identity.StartTime);
            Assert.EndsWith("sleep", identity.Executable, StringComparison.Ordinal);
        }
        finally
        {
            child.Kill();
        }
    }

    [Fact]
    public void Stop_ends_a_process_with_SIGTERM()
    {
        using var child = Start("/bin/sleep", "1000");
        var start = ProcStat.Read(child.Id)!.Value.StartTime;

        Assert.True(OrphanedQemu.Stop(child.Id, start, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10)));
        Assert.True(child.WaitForExit(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void Stop_ends_a_process_that_ignores_SIGTERM_with_SIGKILL_after_the_grace()
    {
        using var child = Start("/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done");
        Assert.Equal("ready", child.StandardOutput.ReadLine());
        var start = ProcStat.Read(child.Id)!.Value.StartTime;
        var clock = Stopwatch.StartNew();

        Assert.True(OrphanedQemu.Stop(child.Id, start, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(10)));
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(500), $"killed after {clock.Elapsed}, before the grace");
        Assert.True(child.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.Equal(137, child.ExitCode);
    }

    private static Process Start(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        return Process.Start(info)!;
    }

    private void FakeProcess(int pid, string exe, ulong startTime, params string[] args) => FakeProcess(pid, exe, startTime, args, 'S');

    private void FakeProcess(int pid, string exe, ulong startTime, string[] args, char state)
    {
        var dir = Directory.CreateDirectory(Path.Combine(_proc, pid.ToString(System.Globalization.CultureInfo.InvariantCulture))).FullName;
        File.WriteAllText(Path.Combine(dir, "stat"), StatLine(Path.GetFileName(exe), state, startTime));
        File.WriteAllText(Path.Combine(dir, "cmdline"), string.Join('\0', [exe, .. args]) + "\0");
        File.CreateSymbolicLink(Path.Combine(dir, "exe"), exe);
    }

    /// <summary>A /proc/&lt;pid&gt;/stat line: 52 fields, state third, start time twenty-second.</summary>
    private static string StatLine(string comm, char state, ulong startTime)
    {
        var fields = Enumerable.Repeat("0", 52).ToArray();
        fields[0] = "4321";
        fields[1] = $"({comm})";
        fields[2] = state.ToString();
        fields[21] = startTime.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return string.Join(' ', fields) + "\n";
    }
}
