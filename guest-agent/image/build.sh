#!/usr/bin/env bash
# Builds the guest VM image of the csharp runtime, with one of two kernels (GUEST_KERNEL):
#   custom (default): our own kernel, eng/kernel/build.sh (Debian's linux-source-6.1 configured for this guest,
#                     everything built in; built once per machine and cached)
#     OUTDIR/vmlinux      that kernel (ELF with a PVH entry note: QEMU boots it directly, under qboot)
#     OUTDIR/initrd.img   gzip'd newc cpio: busybox, /init, csharp-agent, csharp-nsexec, glibc; no modules
#   generic: Debian's kernel (linux-image-amd64) and its modules
#     OUTDIR/vmlinuz      /boot/vmlinuz-<ver>, for the firmware boot (SeaBIOS)
#     OUTDIR/vmlinux      the same kernel uncompressed, for the PVH boot
#     OUTDIR/initrd.img   as above, plus the modules /init loads at boot and those the kernel loads on demand
#   OUTDIR/image.manifest which kernel, and the hash of every input; a rebuild is skipped while it matches
#
# Usage: guest-agent/image/build.sh OUTDIR
#
# Environment overrides:
#   AGENT_BIN=/path        use this agent executable instead of `dotnet publish` of GuestAgent.csproj
#   NSEXEC_BIN=/path       use this csharp-nsexec instead of `make -C guest-agent/native`
#   NSEXEC_BIN=none        ship no csharp-nsexec (only for stand-in images)
#   GUEST_KERNEL=custom|generic  the kernel (default custom; see above)
#   KERNEL_VERSION=<ver>   generic: use /boot/vmlinuz-<ver> and /lib/modules/<ver> (default: newest installed)
#   EXTRA_MODULES="a b"    generic: more kernel modules to ship and load at boot (after the default list)
#   ONDEMAND_MODULES="a b" generic: replaces the list of modules shipped for the kernel to load on demand
#   EXTRA_LIBS="x y"       more shared libraries (paths or sonames) to ship, e.g. libssl.so.3
#   SOURCE_DATE_EPOCH=N    mtime of every file in the initramfs (default 0)
#   FORCE=1                rebuild even when image.manifest matches
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }
log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

[[ $# -eq 1 && $1 != -h && $1 != --help ]] || { usage >&2; exit 2; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
mkdir -p "$1"
OUTDIR=$(cd "$1" && pwd)

AGENT_CSPROJ=$REPO_ROOT/guest-agent/src/GuestAgent/GuestAgent.csproj
NATIVE_DIR=$REPO_ROOT/guest-agent/native
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
EXTRA_MODULES=${EXTRA_MODULES:-}
EXTRA_LIBS=${EXTRA_LIBS:-}
AGENT_BIN=${AGENT_BIN:-}
NSEXEC_BIN=${NSEXEC_BIN:-}
GUEST_KERNEL=${GUEST_KERNEL:-custom}
LIBDIR=lib/x86_64-linux-gnu
case "$GUEST_KERNEL" in
custom) [[ -z $EXTRA_MODULES && -z ${ONDEMAND_MODULES:-} && -z ${KERNEL_VERSION:-} ]] ||
	die "EXTRA_MODULES, ONDEMAND_MODULES and KERNEL_VERSION apply to GUEST_KERNEL=generic (the custom kernel has no modules)" ;;
generic) ;;
*) die "GUEST_KERNEL=$GUEST_KERNEL: expected custom or generic" ;;
esac

# Generic kernel only (the custom one has all of them built in: eng/kernel/guest.config).
# Loaded by /init in this order (modprobe pulls in dependencies). virtio_blk and virtio_net are not
# needed by the agent itself but are what block-device rootfs and pod networking will need; virtio_balloon
# sends the host free-page reports (the config's freePageReporting), so freed guest memory leaves QEMU's RSS.
MODULES=(
	virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
	virtio_console virtio_rng
	9pnet 9pnet_virtio 9p
	overlay
	vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport vsock_loopback
	fuse virtiofs
	virtio_blk virtio_net
	virtio_balloon
)
# shellcheck disable=SC2206
MODULES+=($EXTRA_MODULES)

# Shipped but not loaded at boot: the kernel loads them when a container first needs one (it runs /sbin/modprobe,
# busybox's, which resolves aliases such as rtnl-link-bridge and dependencies through modules.dep/modules.alias).
# What privileged workloads (CNI plugins in pods, Docker-in-Docker, kube-proxy, VPNs) ask the kernel for.
DEFAULT_ONDEMAND_MODULES=(
	bridge stp llc br_netfilter veth tun tap macvlan ipvlan vxlan dummy 8021q ipip ip_gre geneve wireguard
	nf_tables nft_compat nft_chain_nat nft_ct nft_nat nft_masq nft_redir nft_reject nft_reject_inet nft_reject_ipv4
	nft_reject_ipv6 nft_fib nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_limit nft_log nft_hash nft_numgen
	nft_socket nft_tproxy nft_quota nft_objref nft_connlimit
	nf_conntrack nf_conntrack_netlink nf_nat nf_reject_ipv4 nf_reject_ipv6 nfnetlink nfnetlink_queue nfnetlink_log
	ip_tables ip6_tables iptable_filter iptable_nat iptable_mangle iptable_raw ip6table_filter ip6table_nat
	ip6table_mangle ip6table_raw x_tables xt_conntrack xt_MASQUERADE xt_nat xt_addrtype xt_mark xt_comment
	xt_multiport xt_tcpudp xt_statistic xt_state xt_REDIRECT xt_set xt_physdev xt_CT xt_tcpmss xt_NFLOG
	ipt_REJECT ip6t_REJECT ip_set ip_set_hash_ip ip_set_hash_net ip_set_hash_ipport ip_set_bitmap_port
	ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh
	sch_htb sch_ingress sch_netem sch_tbf sch_fq_codel cls_u32 cls_bpf cls_flower act_mirred act_bpf
	squashfs loop ext4 isofs
)
# shellcheck disable=SC2206
ONDEMAND_MODULES=(${ONDEMAND_MODULES:-${DEFAULT_ONDEMAND_MODULES[*]}})

# The NativeAOT agent links only libc and libm (ldd adds whatever else an ELF we ship needs). libgcc_s is what
# glibc dlopens to unwind a thread in pthread_exit/pthread_cancel: without it that aborts, and the agent is PID 1.
BASE_LIBS=(ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1)

umask 022
export LC_ALL=C

# ---------------------------------------------------------------------------------------------
# Tools: install what is missing (Debian 12, root).
dpkg_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

build_agent=1 build_native=1
[[ -z $AGENT_BIN ]] || build_agent=0
[[ -z $NSEXEC_BIN ]] || build_native=0

need=()
for p in busybox-static cpio gzip xz-utils; do
	dpkg_installed "$p" || need+=("$p")
done
if [[ $GUEST_KERNEL == generic ]]; then
	for p in linux-image-amd64 kmod; do dpkg_installed "$p" || need+=("$p"); done
fi
if ((build_native)); then
	for p in make gcc libc6-dev; do dpkg_installed "$p" || need+=("$p"); done
fi
if ((build_agent)); then # what NativeAOT compiles and links the agent with
	for p in clang zlib1g-dev; do dpkg_installed "$p" || need+=("$p"); done
fi
if ((${#need[@]})); then
	[[ $EUID -eq 0 ]] || die "missing packages (${need[*]}) and not root"
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q -o DPkg::Lock::Timeout=600 update
	apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${need[@]}"
fi

BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do
	if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi
done
[[ -n $BUSYBOX ]] || die "no statically linked busybox found (busybox-static)"

# ---------------------------------------------------------------------------------------------
# Kernel. Custom: eng/kernel/build.sh's cached vmlinux (it builds it when the cache lacks it), no modules.
# Generic: the newest version in /lib/modules that has a matching /boot/vmlinuz, and its modules.
KVER=${KERNEL_VERSION:-}
declare -A MOD_FILE=()
MOD_MISSING=()
MOD_FILES=()

# Modules and their dependencies (modinfo -F depends, recursively).
resolve_module() {
	local m=$1 f dep
	f=$(modinfo -k "$KVER" -F filename "$m" 2>/dev/null | head -n1) || f=
	if [[ -z $f ]]; then MOD_MISSING+=("$m"); return; fi
	[[ $f == "(builtin)" || -n ${MOD_FILE[$f]:-} ]] && return
	MOD_FILE[$f]=$m
	local deps
	deps=$(modinfo -k "$KVER" -F depends "$m" 2>/dev/null | head -n1)
	for dep in ${deps//,/ }; do resolve_module "$dep"; done
}

custom_kernel() {
	KERNEL=$("$REPO_ROOT/eng/kernel/build.sh") || die "building the custom guest kernel failed (GUEST_KERNEL=generic uses Debian's)"
	[[ -f $KERNEL ]] || die "eng/kernel/build.sh printed no kernel ($KERNEL)"
	KVER=$(sed -n 's/^kernelrelease //p' "$(dirname "$KERNEL")/version")
	[[ -n $KVER ]] || die "$(dirname "$KERNEL")/version names no kernel release"
	MODULES=() ONDEMAND_MODULES=()
}

generic_kernel() {
	if [[ -z $KVER ]]; then
		while read -r v; do
			if [[ -f /boot/vmlinuz-$v ]]; then KVER=$v; break; fi
		done < <(find /lib/modules -mindepth 1 -maxdepth 1 -type d -name '*-amd64' -printf '%f\n' | sort -rV)
	fi
	[[ -n $KVER ]] || die "no kernel found: need /lib/modules/<ver> and /boot/vmlinuz-<ver>"
	KERNEL=/boot/vmlinuz-$KVER
	MODDIR=/lib/modules/$KVER
	[[ -f $KERNEL && -d $MODDIR ]] || die "kernel $KVER: $KERNEL or $MODDIR missing"
	for m in "${MODULES[@]}" "${ONDEMAND_MODULES[@]}"; do resolve_module "$m"; done
	((${#MOD_MISSING[@]} == 0)) || log "warning: kernel $KVER lacks modules: ${MOD_MISSING[*]} (init will skip them)"
	mapfile -t MOD_FILES < <(printf '%s\n' "${!MOD_FILE[@]}" | sort)
}

if [[ $GUEST_KERNEL == custom ]]; then custom_kernel; else generic_kernel; fi

# Shared libraries by soname (or path): the first match in the multiarch directories.
find_lib() {
	local name=$1 d p
	if [[ $name == /* ]]; then [[ -e $name ]] && { echo "$name"; return 0; }; return 1; fi
	for d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64 /lib /usr/lib; do
		[[ -e $d/$name ]] && { echo "$d/$name"; return 0; }
	done
	p=$(ldconfig -p | awk -v n="$name" '$1 == n && /x86-64/ { print $NF; exit }')
	[[ -n $p ]] && { echo "$p"; return 0; }
	return 1
}
BASE_LIB_PATHS=()
# shellcheck disable=SC2206
for l in "${BASE_LIBS[@]}" $EXTRA_LIBS; do
	p=$(find_lib "$l") || die "shared library $l not found on this machine"
	BASE_LIB_PATHS+=("$p")
done

# ---------------------------------------------------------------------------------------------
# Input hash.
exec 9>"$OUTDIR/.build.lock"
flock 9

WORK=$(mktemp -d "${TMPDIR:-/tmp}/csharp-guest-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

hash_tree() { # every file under the given repo dirs, minus build output
	local d
	for d in "$@"; do
		[[ -e $REPO_ROOT/$d ]] || continue
		find "$REPO_ROOT/$d" \( -path "$OUTDIR" -o -name bin -o -name obj -o -name TestResults -o -name .vs \
			-o -name '*.swp' \) -prune -o -type f -print
	done | sort | while read -r f; do
		printf '%s  repo:%s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "${f#"$REPO_ROOT"/}"
	done
}
hash_file() { printf '%s  %s\n' "$(sha256sum <"$2" | cut -d' ' -f1)" "$1"; }

{
	echo "setting guest-kernel=$GUEST_KERNEL"
	echo "setting kernel-version=$KVER"
	echo "setting source-date-epoch=$SOURCE_DATE_EPOCH"
	echo "setting modules=${MODULES[*]}"
	echo "setting ondemand-modules=${ONDEMAND_MODULES[*]}"
	echo "setting extra-libs=$EXTRA_LIBS"
	for p in busybox-static libc6 libgcc-s1 libstdc++6 kmod cpio gzip xz-utils; do
		echo "package $p=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo none)"
	done
	hash_file "$KERNEL" "$KERNEL"
	hash_file "$BUSYBOX" "$BUSYBOX"
	for f in "${MOD_FILES[@]}"; do hash_file "$f" "$f"; done
	for f in "${BASE_LIB_PATHS[@]}"; do hash_file "$f" "$f"; done
	hash_tree guest-agent/image
	if ((build_agent)); then
		echo "setting dotnet-sdk=$(cd "$REPO_ROOT" && dotnet --version 2>/dev/null || echo none)"
		hash_tree guest-agent/src src/Agent.Protocol src/Ttrpc src/Transport src/Netlink protos/agent
		for f in "$REPO_ROOT"/Directory.*.props "$REPO_ROOT"/global.json; do
			if [[ -f $f ]]; then hash_file "repo:${f#"$REPO_ROOT"/}" "$f"; fi
		done
	else
		[[ -f $AGENT_BIN ]] || die "AGENT_BIN=$AGENT_BIN does not exist"
		hash_file "agent:$AGENT_BIN" "$AGENT_BIN"
	fi
	if ((build_native)); then
		hash_tree guest-agent/native
	elif [[ $NSEXEC_BIN == none ]]; then
		echo "setting nsexec=none"
	else
		[[ -f $NSEXEC_BIN ]] || die "NSEXEC_BIN=$NSEXEC_BIN does not exist"
		hash_file "nsexec:$NSEXEC_BIN" "$NSEXEC_BIN"
	fi
} >"$WORK/inputs"
INPUT_HASH=$(sha256sum <"$WORK/inputs" | cut -d' ' -f1)

MANIFEST=$OUTDIR/image.manifest
output_hash() { sha256sum <"$OUTDIR/$1" | cut -d' ' -f1; }
outputs_match() { # every output the manifest lists is there, unchanged; the kernel and initrd among them
	local name n=0
	grep -q '  initrd.img$' "$MANIFEST" && grep -qE '  vmlinu[xz]$' "$MANIFEST" || return 1
	while read -r name; do
		[[ -f $OUTDIR/$name ]] && grep -qx "output $(output_hash "$name")  $name" "$MANIFEST" || return 1
		n=$((n + 1))
	done < <(sed -n 's/^output [0-9a-f]*  //p' "$MANIFEST")
	((n > 0))
}
if [[ ${FORCE:-0} != 1 && -f $MANIFEST ]] && grep -qx "input-hash: $INPUT_HASH" "$MANIFEST" && outputs_match; then
	echo "guest image up to date ($OUTDIR, input hash ${INPUT_HASH:0:16})"
	exit 0
fi
log "building guest image in $OUTDIR ($GUEST_KERNEL kernel $KVER, input hash ${INPUT_HASH:0:16})"

# ---------------------------------------------------------------------------------------------
# The agent and the native helper.
if ((build_agent)); then
	[[ -f $AGENT_CSPROJ ]] || die "$AGENT_CSPROJ not found (set AGENT_BIN=/path to use a prebuilt agent)"
	command -v dotnet >/dev/null || die "dotnet SDK not found (set AGENT_BIN=/path to use a prebuilt agent)"
	log "dotnet publish $AGENT_CSPROJ"
	dotnet publish "$AGENT_CSPROJ" -c Release -o "$WORK/agent" --nologo >"$WORK/publish.log" 2>&1 ||
		{ cat "$WORK/publish.log" >&2; die "dotnet publish failed"; }
	AGENT_BIN=$WORK/agent/csharp-agent
	[[ -f $AGENT_BIN ]] || die "dotnet publish produced no $AGENT_BIN"
fi
if ((build_native)); then
	[[ -f $NATIVE_DIR/Makefile ]] || die "$NATIVE_DIR/Makefile not found (set NSEXEC_BIN=/path, or NSEXEC_BIN=none)"
	log "make -C $NATIVE_DIR"
	make -s -C "$NATIVE_DIR" OUT="$WORK/native" >&2 || die "building csharp-nsexec failed"
	NSEXEC_BIN=$WORK/native/csharp-nsexec
	[[ -f $NSEXEC_BIN ]] || die "make produced no $NSEXEC_BIN"
fi

# ---------------------------------------------------------------------------------------------
# The initramfs tree.
ROOT=$WORK/root
mkdir -p "$ROOT"
cd "$ROOT"
mkdir -p bin sbin usr/bin usr/sbin usr/libexec/csharp-agent etc/csharp-agent "$LIBDIR" lib64 \
	proc sys sys/fs/cgroup dev run tmp var/tmp root mnt
chmod 1777 tmp var/tmp
chmod 0700 root
ln -s ../run var/run

install -m 0755 "$SCRIPT_DIR/init" init
install -m 0755 "$BUSYBOX" bin/busybox
while read -r applet; do
	case "$applet" in bin/busybox | linuxrc | sbin/init | "") continue ;; esac
	[[ -e $applet || -L $applet ]] || ln -s /bin/busybox "$applet"
done < <("$BUSYBOX" --list-full)

install -m 0755 "$AGENT_BIN" usr/bin/csharp-agent
AGENT_SOS=()
if ((build_agent)); then
	# Native libraries the publish left next to the executable (not bundled) must sit beside it.
	while IFS= read -r -d '' so; do
		install -m 0644 "$so" "usr/bin/${so##*/}"
		AGENT_SOS+=("usr/bin/${so##*/}")
	done < <(find "$WORK/agent" -maxdepth 1 -name '*.so*' -type f -print0)
fi
if [[ $NSEXEC_BIN != none ]]; then
	install -m 0755 "$NSEXEC_BIN" usr/libexec/csharp-agent/csharp-nsexec
	if ldd "$NSEXEC_BIN" >/dev/null 2>&1; then
		log "warning: $NSEXEC_BIN is dynamically linked (it should be static); shipping its libraries"
	fi
fi

# Shared libraries: the base set, EXTRA_LIBS, and whatever ldd reports for every ELF we ship.
copy_lib() { # copy_lib SRC NAME
	local dst=$LIBDIR/$2
	[[ -e $dst ]] && return 0
	install -m 0644 "$(readlink -f "$1")" "$dst"
}
for p in "${BASE_LIB_PATHS[@]}"; do copy_lib "$p" "${p##*/}"; done
chmod 0755 "$LIBDIR/ld-linux-x86-64.so.2"
ln -s "../$LIBDIR/ld-linux-x86-64.so.2" lib64/ld-linux-x86-64.so.2
ldd_deps() { # print "name path" for each dependency of a dynamic ELF; fail on "not found"
	local out
	out=$(ldd "$1" 2>&1) || return 0 # static or not an ELF
	if grep -q 'not found' <<<"$out"; then
		echo "$out" >&2
		die "$1 needs libraries missing on this machine"
	fi
	awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 } $1 ~ /^\// { n = $1; sub(/.*\//, "", n); print n, $1 }' <<<"$out"
}
scan=(usr/bin/csharp-agent "${AGENT_SOS[@]}" "${BASE_LIB_PATHS[@]}")
[[ $NSEXEC_BIN == none ]] || scan+=(usr/libexec/csharp-agent/csharp-nsexec)
for f in "${scan[@]}"; do
	ldd_deps "$f" >"$WORK/deps"
	while read -r name path; do copy_lib "$path" "$name"; done <"$WORK/deps"
done

# Kernel modules (generic kernel) with a depmod-generated modules.dep, and the list /init loads; without that
# list /init loads nothing.
if [[ $GUEST_KERNEL == generic ]]; then
	for f in "${MOD_FILES[@]}"; do
		install -D -m 0644 "$f" "${f#/}"
	done
	for f in modules.order modules.builtin modules.builtin.modinfo; do
		if [[ -f $MODDIR/$f ]]; then install -m 0644 "$MODDIR/$f" "${MODDIR#/}/$f"; fi
	done
	depmod -b "$ROOT" "$KVER"
	printf '%s\n' "${MODULES[@]}" >etc/csharp-agent/modules
fi

# /etc
cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
tty:x:5:
nogroup:x:65534:
EOF
echo localhost >etc/hostname
cat >etc/hosts <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
cat >etc/nsswitch.conf <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
ln -s /proc/self/mounts etc/mtab

# Device nodes for the kernel to open the console before /init mounts devtmpfs.
if ! { mknod -m 0600 dev/console c 5 1 && mknod -m 0666 dev/null c 1 3; }; then
	log "warning: cannot create device nodes (not root?); /init falls back to /dev/console after devtmpfs"
fi

# ---------------------------------------------------------------------------------------------
# Archive: sorted entries, fixed mtimes and owners, no gzip name/time.
find . -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
find . -mindepth 1 -printf '%P\0' | sort -z |
	cpio --null -o -H newc --reproducible -R 0:0 --quiet | gzip -n -9 >"$WORK/initrd.img"
cd "$WORK"

if [[ $GUEST_KERNEL == custom ]]; then
	install -m 0644 "$KERNEL" "$WORK/vmlinux"
else
	install -m 0644 "$KERNEL" "$WORK/vmlinuz"

	# The uncompressed kernel, as the kernel's scripts/extract-vmlinux finds it: the payload after the first xz or gzip
	# magic that decompresses to an ELF. Debian builds with CONFIG_PVH=y, so QEMU enters it through its PVH note.
	extract_vmlinux() { # extract_vmlinux BZIMAGE OUT
		local magic tool offset
		for magic in '\xfd7zXZ\x00:xz' '\x1f\x8b\x08:gzip'; do
			tool=${magic##*:}
			while read -r offset; do
				tail -c +$((offset + 1)) "$1" | "$tool" -dc >"$2" 2>/dev/null || true
				[[ $(head -c 4 "$2" | od -An -tx1 | tr -d ' ') == 7f454c46 ]] && return 0
			done < <(grep -obUaP "${magic%:*}" "$1" | cut -d: -f1)
		done
		return 1
	}
	if grep -qx 'CONFIG_PVH=y' "/boot/config-$KVER" 2>/dev/null && extract_vmlinux "$KERNEL" "$WORK/vmlinux"; then
		chmod 0644 "$WORK/vmlinux"
	else
		log "warning: no PVH kernel from $KERNEL (needs CONFIG_PVH=y and an xz or gzip payload); only vmlinuz is built"
		rm -f "$WORK/vmlinux"
	fi
fi
{
	echo "# csharp guest image; rebuilt by guest-agent/image/build.sh when the input hash changes"
	echo "input-hash: $INPUT_HASH"
	echo "kernel: $KVER"
	echo "guest-kernel: $GUEST_KERNEL"
	[[ ! -f $WORK/vmlinuz ]] || echo "output $(sha256sum <"$WORK/vmlinuz" | cut -d' ' -f1)  vmlinuz"
	echo "output $(sha256sum <"$WORK/initrd.img" | cut -d' ' -f1)  initrd.img"
	[[ ! -f $WORK/vmlinux ]] || echo "output $(sha256sum <"$WORK/vmlinux" | cut -d' ' -f1)  vmlinux"
	echo "# initramfs: $(find "$ROOT" -mindepth 1 | wc -l) entries, $(du -sb "$ROOT" | cut -f1) bytes unpacked"
	echo "# inputs:"
	cat "$WORK/inputs"
} >"$WORK/image.manifest"
rm -f "$MANIFEST"
if [[ -f $WORK/vmlinuz ]]; then mv -f "$WORK/vmlinuz" "$OUTDIR/vmlinuz"; else rm -f "$OUTDIR/vmlinuz"; fi
if [[ -f $WORK/vmlinux ]]; then mv -f "$WORK/vmlinux" "$OUTDIR/vmlinux"; else rm -f "$OUTDIR/vmlinux"; fi
mv -f "$WORK/initrd.img" "$OUTDIR/initrd.img"
mv -f "$WORK/image.manifest" "$MANIFEST"
log "done: $GUEST_KERNEL kernel $KVER in $OUTDIR, $OUTDIR/initrd.img ($(du -h "$OUTDIR/initrd.img" | cut -f1))"
