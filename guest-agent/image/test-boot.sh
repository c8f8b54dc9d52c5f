#!/usr/bin/env bash
# Boots the guest image under QEMU and checks what the guest printed on its serial console.
#
# Usage: guest-agent/image/test-boot.sh [options]
#   --agent PATH      agent executable for the image (default: a shell stand-in that prints
#                     "AGENT-STANDIN <kernel>", mounts the 9p share, and powers off)
#   --repo-agent      build the image with the repo's agent (dotnet publish) instead of a stand-in
#   --dotnet-standin  use a trimmed single-file .NET hello world (published once into
#                     /tmp/csharp-guest-test/dotnet-hello) run with csharp.supervise=1: proves the
#                     .NET runtime starts in the guest with the libraries the image ships
#   --nsexec PATH     csharp-nsexec for the image (default: the repo build if guest-agent/native has a
#                     Makefile, else none)
#   --expect TEXT     text the console must show (repeatable; default AGENT-STANDIN for the stand-in)
#   --out DIR         image directory (default: /tmp/csharp-guest-test/<agent>; rebuilt only when stale)
#   --append PARAMS   extra kernel parameters (e.g. csharp.supervise=1, quiet)
#   --memory MB       guest memory (default 512)
#   --timeout SEC     QEMU time limit (default 120)
#   --allow-panic     do not fail on a kernel panic (an exec'd agent that exits makes PID 1 die)
#   --keep            keep the work directory (console.log, sockets)
# Exit status 0 when every check passed. The console log is printed on failure.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

AGENT= REPO_AGENT=0 DOTNET_STANDIN=0 NSEXEC= OUT= APPEND= MEMORY=512 TIMEOUT=120 ALLOW_PANIC=0 KEEP=0
EXPECT=()
while (($#)); do
	case $1 in
	--agent) AGENT=$2; shift 2 ;;
	--repo-agent) REPO_AGENT=1; shift ;;
	--dotnet-standin) DOTNET_STANDIN=1; shift ;;
	--nsexec) NSEXEC=$2; shift 2 ;;
	--expect) EXPECT+=("$2"); shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--append) APPEND="$APPEND $2"; shift 2 ;;
	--memory) MEMORY=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--allow-panic) ALLOW_PANIC=1; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
	*) echo "test-boot.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

if ! command -v qemu-system-x86_64 >/dev/null; then
	[[ $EUID -eq 0 ]] || { echo "test-boot.sh: qemu-system-x86_64 missing and not root" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update
	DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends qemu-system-x86
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/csharp-guest-boot.XXXXXX")
cleanup() { if ((KEEP)); then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

if ((DOTNET_STANDIN)); then
	HELLO=/tmp/csharp-guest-test/dotnet-hello
	mkdir -p "$HELLO"
	cat >"$HELLO/hello.csproj.new" <<'EOF'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <AssemblyName>csharp-agent</AssemblyName>
    <RuntimeIdentifier>linux-x64</RuntimeIdentifier>
    <SelfContained>true</SelfContained>
    <PublishSingleFile>true</PublishSingleFile>
    <IncludeNativeLibrariesForSelfExtract>true</IncludeNativeLibrariesForSelfExtract>
    <PublishTrimmed>true</PublishTrimmed>
    <PublishReadyToRun>true</PublishReadyToRun>
    <InvariantGlobalization>true</InvariantGlobalization>
    <UseSystemResourceKeys>true</UseSystemResourceKeys>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
  </PropertyGroup>
</Project>
EOF
	cat >"$HELLO/Program.cs.new" <<'EOF'
using System.Diagnostics;
using System.IO.Compression;
using System.Net.Sockets;
using System.Runtime.InteropServices;

var sw = Stopwatch.StartNew();
Console.WriteLine($"DOTNET-STANDIN pid={Environment.ProcessId} {RuntimeInformation.FrameworkDescription} uptime={File.ReadAllText("/proc/uptime").Split(' ')[0]}s");
using (var ms = new MemoryStream())
{
    using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
    {
        gz.Write(new byte[4096]);
    }
    Console.WriteLine($"DOTNET-STANDIN zlib ok ({ms.Length} bytes)");
}
using (var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
{
    Console.WriteLine("DOTNET-STANDIN sockets ok");
}
await Task.Run(() => Console.WriteLine("DOTNET-STANDIN threadpool ok"));
Console.WriteLine($"DOTNET-STANDIN agent.0 exists={File.Exists("/dev/virtio-ports/agent.0")}");
Console.WriteLine($"DOTNET-STANDIN done in {sw.ElapsedMilliseconds} ms");
return 0;
EOF
	# Republish only when the sources changed (keeps the image cache warm).
	for f in hello.csproj Program.cs; do
		if cmp -s "$HELLO/$f.new" "$HELLO/$f"; then rm -f "$HELLO/$f.new"; else mv "$HELLO/$f.new" "$HELLO/$f"; fi
	done
	if [[ ! -x $HELLO/out/csharp-agent || $HELLO/Program.cs -nt $HELLO/out/csharp-agent || $HELLO/hello.csproj -nt $HELLO/out/csharp-agent ]]; then
		echo "test-boot.sh: publishing the .NET stand-in in $HELLO"
		dotnet publish "$HELLO/hello.csproj" -c Release -o "$HELLO/out" --nologo >"$HELLO/publish.log" 2>&1 ||
			{ cat "$HELLO/publish.log"; exit 1; }
	fi
	AGENT=$HELLO/out/csharp-agent
	OUT=${OUT:-/tmp/csharp-guest-test/dotnet-standin}
	APPEND="$APPEND csharp.supervise=1"
	((${#EXPECT[@]})) || EXPECT=("DOTNET-STANDIN zlib ok" "DOTNET-STANDIN sockets ok" "DOTNET-STANDIN threadpool ok"
		"DOTNET-STANDIN agent.0 exists=True" "DOTNET-STANDIN done" "csharp-agent exited with status 0")
fi

STANDIN=0
if ((!REPO_AGENT)) && [[ -z $AGENT ]]; then
	STANDIN=1
	AGENT=$WORK/csharp-agent-standin
	cat >"$AGENT" <<'EOF'
#!/bin/sh
echo "AGENT-STANDIN $(uname -r) pid=$$ uptime=$(cut -d' ' -f1 /proc/uptime)"
[ -e /dev/virtio-ports/agent.0 ] && echo "AGENT-STANDIN port /dev/virtio-ports/agent.0 present"
mkdir -p /mnt/share
if mount -t 9p -o trans=virtio,version=9p2000.L,ro share /mnt/share; then
	echo "AGENT-STANDIN 9p share says: $(cat /mnt/share/marker)"
	umount /mnt/share
fi
[ -e /usr/libexec/csharp-agent/csharp-nsexec ] && echo "AGENT-STANDIN nsexec present"
echo "AGENT-STANDIN root is $(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)"
grep -qw bridge /proc/modules || echo "AGENT-STANDIN bridge not loaded at boot"
ip link add standinbr0 type bridge && echo "AGENT-STANDIN bridge created" &&
	grep -qw bridge /proc/modules && echo "AGENT-STANDIN bridge loaded on demand"
echo "AGENT-STANDIN powering off"
poweroff -f
EOF
	chmod 0755 "$AGENT"
fi

if [[ -z $OUT ]]; then
	if ((REPO_AGENT)); then OUT=/tmp/csharp-guest-test/repo-agent
	elif ((STANDIN)); then OUT=/tmp/csharp-guest-test/standin
	else OUT=/tmp/csharp-guest-test/$(basename "$(dirname "$(readlink -f "$AGENT")")")-$(basename "$AGENT")
	fi
fi

BUILD_ENV=()
if ((!REPO_AGENT)); then
	# The stand-in lives in the work dir: copy it to a stable path so the image cache can hit.
	if ((STANDIN)); then
		mkdir -p "$OUT"
		cp "$AGENT" "$OUT/.standin-agent"
		AGENT=$OUT/.standin-agent
	fi
	BUILD_ENV+=("AGENT_BIN=$(readlink -f "$AGENT")")
fi
if [[ -n $NSEXEC ]]; then
	BUILD_ENV+=("NSEXEC_BIN=$NSEXEC")
elif [[ ! -f $REPO_ROOT/guest-agent/native/Makefile ]]; then
	BUILD_ENV+=("NSEXEC_BIN=none")
fi

t0=$(date +%s.%N)
env "${BUILD_ENV[@]}" "$SCRIPT_DIR/build.sh" "$OUT"
t1=$(date +%s.%N)
# The generic kernel loads modules (at boot and on demand); the custom one has them built in.
FLAVOUR=$(sed -n 's/^guest-kernel: //p' "$OUT/image.manifest")
FLAVOUR=${FLAVOUR:-generic}
if ((STANDIN)) && ((${#EXPECT[@]} == 0)); then
	KVER=$(sed -n 's/^kernel: //p' "$OUT/image.manifest")
	EXPECT=("AGENT-STANDIN $KVER" "AGENT-STANDIN port /dev/virtio-ports/agent.0 present"
		"AGENT-STANDIN 9p share says: 9p-ok" "AGENT-STANDIN root is tmpfs" "AGENT-STANDIN bridge not loaded at boot"
		"AGENT-STANDIN bridge created")
	[[ $FLAVOUR != generic ]] || EXPECT+=("AGENT-STANDIN bridge loaded on demand")
fi
# The PVH kernel when the image has one (what the shipped config boots), else the generic bzImage.
KERNEL_FILE=$OUT/vmlinux
[[ -f $KERNEL_FILE ]] || KERNEL_FILE=$OUT/vmlinuz

mkdir -p "$WORK/share"
echo 9p-ok >"$WORK/share/marker"
# A PVM-only KVM (kvm_pvm without kvm_intel/kvm_amd) opens but hangs ordinary guests: TCG there.
if [[ -w /dev/kvm && ( -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ) ]]; then ACCEL=kvm CPU=host; else ACCEL=tcg CPU=max; fi
CONSOLE=$WORK/console.log
set +e
timeout -s KILL "$TIMEOUT" qemu-system-x86_64 \
	-machine "q35,accel=$ACCEL" -cpu "$CPU" -m "$MEMORY" -smp 1 \
	-nodefaults -no-user-config -nographic -no-reboot \
	-kernel "$KERNEL_FILE" -initrd "$OUT/initrd.img" \
	-append "console=ttyS0 panic=1 csharp.debug=1$APPEND" \
	-serial "file:$CONSOLE" \
	-device virtio-serial-pci \
	-chardev "socket,id=agent,path=$WORK/agent.sock,server=on,wait=off" \
	-device virtserialport,chardev=agent,name=agent.0 \
	-fsdev "local,id=share,path=$WORK/share,security_model=none,readonly=on" \
	-device virtio-9p-pci,fsdev=share,mount_tag=share \
	-device virtio-rng-pci \
	</dev/null >"$WORK/qemu.out" 2>&1
rc=$?
set -e
t2=$(date +%s.%N)

fail=0
check() { # check DESCRIPTION GREP-ARGS...
	local what=$1
	shift
	if grep -q "$@" "$CONSOLE"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
check_absent() {
	local what=$1
	shift
	if grep -q "$@" "$CONSOLE"; then echo "FAIL $what"; grep "$@" "$CONSOLE" | head -5; fail=1; else echo "ok   $what"; fi
}
touch "$CONSOLE"
if ((rc != 0)); then echo "FAIL qemu exited with status $rc (137: killed after ${TIMEOUT}s)"; fail=1; fi
check "init started" -F "csharp-init: starting"
if [[ $FLAVOUR == generic ]]; then
	check "virtio_console loaded" -E "^csharp-init: modules loaded:.* virtio_console( |$)"
	check "9p modules loaded" -E "^csharp-init: modules loaded:.* 9pnet_virtio .*9p( |$)"
	check "vsock modules loaded" -E "^csharp-init: modules loaded:.* vmw_vsock_virtio_transport .*vsock_loopback( |$)"
	check "overlay, virtiofs loaded" -E "^csharp-init: modules loaded:.* overlay .*virtiofs( |$)"
else
	check_absent "no modules loaded (all built in)" -F "csharp-init: modules loaded"
fi
check "/dev/virtio-ports/agent.0 exists" -E "csharp-init: virtio port /dev/virtio-ports/agent.0 -> \.\./vport"
check "cgroup2 mounted" -E "^cgroup2 /sys/fs/cgroup cgroup2"
check "agent started" -E "csharp-init: (exec|starting) /usr/bin/csharp-agent"
check_absent "no module failures" -F "modules missing or failed"
check_absent "no missing libraries" -E "not found|error while loading shared libraries|FATAL"
for e in "${EXPECT[@]}"; do check "console shows '$e'" -F "$e"; done
if ((!ALLOW_PANIC)); then check_absent "no kernel panic" -F "Kernel panic"; fi

awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "image build %.1f s, qemu wall %.2f s\n", b - a, c - b }'
grep -E "csharp-init: (starting|exec|csharp-agent exited)|-STANDIN .*(uptime=|done)" "$CONSOLE" | sed 's/^/  /' || true
if ((fail)); then
	echo "---- console ($CONSOLE)"
	cat "$CONSOLE"
	echo "---- qemu"
	cat "$WORK/qemu.out"
	exit 1
fi
echo "boot test passed"
