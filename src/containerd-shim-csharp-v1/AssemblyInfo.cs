// containerd shims are Linux-only: the daemon uses unix sockets, FIFOs and posix_spawn.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
