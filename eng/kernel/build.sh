#!/usr/bin/env bash
# Builds the csharp guest kernel (an uncompressed vmlinux with a PVH entry, everything built in, no modules) from
# Debian's linux-source-6.1 and our config fragment (eng/kernel/guest.config, merged onto `make allnoconfig`), and
# caches it, so that a machine builds it once:
#   $KERNEL_CACHE/<key>/vmlinux   the kernel QEMU boots
#   $KERNEL_CACHE/<key>/config    its full .config
#   $KERNEL_CACHE/<key>/version   `make kernelrelease` and the source package version
# where <key> hashes the source package version, the compiler, guest.config and this script: changing any of them
# builds a new kernel next to the old ones. Prints the cached vmlinux's path on stdout.
#
# Usage: eng/kernel/build.sh [--check]
#   --check   only print the path when that kernel is cached; exit 1 (printing nothing) when it is not
#
# Environment:
#   KERNEL_CACHE=DIR   cache directory (default /var/cache/csharp-shim/kernel)
#   JOBS=N             parallel make jobs (default: nproc)
# A build takes about 15-25 minutes of 2 cores; it runs at nice 10.
set -euo pipefail

log() { echo "kernel/build.sh: $*" >&2; }
die() { echo "kernel/build.sh: error: $*" >&2; exit 1; }

CHECK=0
case "${1:-}" in
--check) CHECK=1 ;;
"") ;;
*) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2 ;;
esac

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAGMENT=$SCRIPT_DIR/guest.config
CACHE=${KERNEL_CACHE:-/var/cache/csharp-shim/kernel}
SRC_PKG=linux-source-6.1
TARBALL=/usr/src/linux-source-6.1.tar.xz
JOBS=${JOBS:-$(nproc)}
export LC_ALL=C

dpkg_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

if ((!CHECK)); then
	need=()
	for p in "$SRC_PKG" make gcc libc6-dev bc flex bison libelf-dev libssl-dev xz-utils; do
		dpkg_installed "$p" || need+=("$p")
	done
	if ((${#need[@]})); then
		[[ $EUID -eq 0 ]] || die "missing packages (${need[*]}) and not root"
		log "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get -q -o DPkg::Lock::Timeout=600 update >&2
		apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${need[@]}" >&2
	fi
fi

src_version=$(dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null) || src_version=
if [[ -z $src_version ]]; then
	((CHECK)) && exit 1
	die "$SRC_PKG is not installed"
fi
KEY=$({
	echo "source $SRC_PKG=$src_version"
	echo "gcc $(gcc -dumpfullversion 2>/dev/null || echo none)"
	sha256sum <"$FRAGMENT"
	sha256sum <"${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-16)
OUT=$CACHE/$KEY

if [[ -f $OUT/vmlinux ]]; then
	echo "$OUT/vmlinux"
	exit 0
fi
((CHECK)) && exit 1

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # another build of the same kernel may be running: wait for it, then use its result
if [[ -f $OUT/vmlinux ]]; then
	echo "$OUT/vmlinux"
	exit 0
fi
[[ -f $TARBALL ]] || die "$TARBALL not found (package $SRC_PKG $src_version)"

WORK=$(mktemp -d "$CACHE/.build-$KEY.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "building the guest kernel $KEY from $SRC_PKG $src_version with $JOBS jobs (log: $WORK/build.log)"
start=$SECONDS
tar -xJf "$TARBALL" -C "$WORK" --strip-components=1
cd "$WORK"

# Reproducible: no build host, user or time in the image.
export KBUILD_BUILD_USER=csharp KBUILD_BUILD_HOST=csharp-shim KBUILD_BUILD_TIMESTAMP="@0" KBUILD_BUILD_VERSION=1
make -s KCONFIG_ALLCONFIG="$FRAGMENT" allnoconfig >&2

# Every option the fragment sets must have survived Kconfig's dependency resolution: a missing dependency would
# otherwise silently drop it (and with it, say, a filesystem the guest mounts).
missing=()
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) grep -qxF "$line" .config || missing+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" .config || echo unset))") ;;
	"# CONFIG_"*" is not set") if grep -q "^${line:2:-11}=" .config; then missing+=("$line"); fi ;;
	esac
done <"$FRAGMENT"
if ((${#missing[@]})); then
	printf '  %s\n' "${missing[@]}" >&2
	die "guest.config asks for options Kconfig did not keep (a dependency is off or a name is wrong)"
fi

nice -n 10 make -j"$JOBS" vmlinux >build.log 2>&1 || { tail -n 40 build.log >&2; die "make vmlinux failed"; }
grep -q 'Xen' <(readelf -n vmlinux 2>/dev/null) || die "vmlinux has no PVH (Xen ELF) note"

STAGE=$WORK/out
mkdir -p "$STAGE"
install -m 0644 vmlinux "$STAGE/vmlinux"
install -m 0644 .config "$STAGE/config"
printf 'kernelrelease %s\nsource %s=%s\n' "$(make -s kernelrelease)" "$SRC_PKG" "$src_version" >"$STAGE/version"
rm -rf "$OUT"
mv "$STAGE" "$OUT"
log "built $OUT/vmlinux ($(du -h "$OUT/vmlinux" | cut -f1)) in $((SECONDS - start)) s"
echo "$OUT/vmlinux"
