using System.CommandLine;
using ShimV2.Cli;

// containerd runs us as: <shim> -namespace ns -address sock -publish-binary bin -id id [-debug] start|delete
// and the daemon as the same flags without an action. Go's flag package: single dash, value in the next argument.
var ns = new Option<string>("-namespace", "--namespace") { Description = "containerd namespace", DefaultValueFactory = _ => "default" };
var address = new Option<string>("-address", "--address") { Description = "containerd gRPC socket", DefaultValueFactory = _ => "/run/containerd/containerd.sock" };
var publishBinary = new Option<string>("-publish-binary", "--publish-binary") { Description = "containerd binary for publishing events", DefaultValueFactory = _ => "containerd" };
var id = new Option<string>("-id", "--id") { Description = "container id", DefaultValueFactory = _ => string.Empty };
var bundle = new Option<string?>("-bundle", "--bundle") { Description = "bundle path (default: working directory)" };
var debug = new Option<bool>("-debug", "--debug") { Description = "debug logging" };
var socket = new Option<string?>("-socket", "--socket") { Description = "socket path to serve on (daemon)" };
var version = new Option<bool>("-v", "--version") { Description = "print the version and exit" };

var root = new RootCommand("containerd-shim-csharp-v1: a containerd shim v2 that runs each pod in its own QEMU VM")
{
    ns, address, publishBinary, id, bundle, debug, socket, version,
};
root.TreatUnmatchedTokensAsErrors = false;

ShimFlags Flags(ParseResult r) => new(
    r.GetValue(ns)!,
    r.GetValue(address)!,
    r.GetValue(publishBinary)!,
    r.GetValue(id)!,
    r.GetValue(bundle) ?? Directory.GetCurrentDirectory(),
    r.GetValue(debug),
    r.GetValue(socket));

var start = new Command("start", "start a shim (or reuse the pod's) and print its address");
start.SetAction(r => StartCommand.Run(Flags(r)));
var delete = new Command("delete", "clean up after a container whose shim is gone");
delete.SetAction(r => DeleteCommand.Run(Flags(r)));
root.Add(start);
root.Add(delete);

// For operators, not containerd: what this host can do (check) and the config as the shim resolves it (env).
var configOption = new Option<string?>("--config") { Description = "hypervisor config (default: $CSHARP_SHIM_CONFIG_PATH, else /etc/containerd-shim-csharp/qemu.json)" };
var containerdSocket = new Option<string>("--containerd-address") { Description = "containerd's gRPC socket to ask for its version", DefaultValueFactory = _ => ShimV2.Cli.Check.ContainerdVersion.DefaultSocket };
var check = new Command("check", "check what this host can do for pods: one line per item, exit 1 when a pod could not start") { configOption, containerdSocket };
check.SetAction((r, ct) => CheckCommand.RunAsync(r.GetValue(configOption), r.GetValue(containerdSocket)!, ct));
var env = new Command("env", "print the effective config, with auto resolved, as JSON") { configOption };
env.SetAction(r => EnvCommand.Run(r.GetValue(configOption)));
root.Add(check);
root.Add(env);
root.SetAction((r, ct) =>
{
    if (r.GetValue(version))
    {
        Console.WriteLine($"containerd-shim-csharp-v1 {ShimV2.Shim.Tasks.TaskService.Version}");
        return Task.FromResult(0);
    }

    return DaemonCommand.RunAsync(Flags(r));
});

return await root.Parse(args).InvokeAsync();
