#!/usr/bin/env bash
# Benchmarks the pod share, virtio-9p against virtio-fs (the hypervisor config's sharedFs), in one run through one
# private containerd and the real `ctr`, and prints a table. No thresholds.
#
# One pod per sharedFs value, each with a host directory bind-mounted at /vol (a volume: it reaches the guest
# through the share, as the container's root filesystem does). Inside the guest, on /vol, timed with the guest's
# /proc/uptime (10 ms resolution), median of R rounds:
#   create  N small files (1 KiB each)      stat   `ls -l` of them (readdir + N stats)     unlink  `rm -r` of them
#   write   MIB MiB sequentially (dd bs=1M, fsync)
#   read    MIB MiB sequentially (dd bs=1M) of a file the host wrote, after the guest dropped its page cache
#   rootfs  N small files created in the container's root filesystem (an overlay on the host, also via the share)
#
# usage: eng/bench/sharedfs.sh [--no-build]
#   BENCH_FILES=500 (N)   BENCH_MIB=64   BENCH_ROUNDS=3 (R)   BENCH_TIMEOUT=600 (seconds per ctr command)
# Runs as root (a private containerd; hold the heavy lock). Builds first (eng/build.sh --no-sln) unless --no-build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/containerd.sh"
cd "$REPO_ROOT"

do_build=1
while (( $# )); do
  case "$1" in
    --no-build) do_build=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
FILES="${BENCH_FILES:-500}"
MIB="${BENCH_MIB:-64}"
ROUNDS="${BENCH_ROUNDS:-3}"
TMO="${BENCH_TIMEOUT:-600}"
(( EUID == 0 )) || die "the benchmark starts a private containerd: run it as root"

if (( do_build )); then "$REPO_ROOT/eng/build.sh" --no-sln; fi
cfg="$ARTIFACTS/config/qemu.json"
[[ -x "$ARTIFACTS/bin/containerd-shim-csharp-v1" && -f "$cfg" ]] || die "the shim or $cfg is missing: run eng/build.sh"

work="$(mktemp -d /tmp/csharp-sharedfs-bench.XXXXXX)"
cleanup() { containerd_stop; rm -rf "$work"; }
containerd_reap_stale
trap cleanup EXIT
containerd_start
import_busybox
img="$BUSYBOX_IMAGE_REF_DEFAULT"
tctr() { timeout -s KILL "$TMO" ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" "$@"; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# The guest side: one round, printing "name seconds" lines. Busybox sh; /proc/uptime is the clock.
cat >"$work/round.sh" <<'EOF_GUEST'
set -e
N="$1" MIB="$2" D=/vol/bench R=/bench
t() { awk '{ print $1 }' /proc/uptime; }
lap() { awk -v a="$1" -v b="$(t)" -v n="$2" 'BEGIN { printf "%s %.2f\n", n, b - a }'; }
rm -rf "$D" "$R"; mkdir -p "$D" "$R"; k="$(head -c 1023 /dev/zero | tr '\0' x)"
# Shell builtins only in the loops: a fork+exec per file would cost more than the file under TCG.
s=$(t); i=0; while [ $i -lt "$N" ]; do echo "$k" >"$D/f$i"; i=$((i + 1)); done; lap "$s" create
s=$(t); ls -l "$D" >/dev/null; ls -l "$D" >/dev/null; ls -l "$D" >/dev/null; lap "$s" stat
s=$(t); rm -r "$D"; lap "$s" unlink
s=$(t); dd if=/dev/zero of=/vol/big bs=1M count="$MIB" conv=fsync 2>/dev/null; lap "$s" write
rm -f /vol/big; sync; echo 3 >/proc/sys/vm/drop_caches
s=$(t); dd if=/vol/host-big of=/dev/null bs=1M 2>/dev/null; lap "$s" read
s=$(t); i=0; while [ $i -lt "$N" ]; do echo "$k" >"$R/f$i"; i=$((i + 1)); done; lap "$s" rootfs
rm -rf "$R"
EOF_GUEST

declare -A SECS
kinds="virtio-9p virtio-fs"
for kind in $kinds; do
  id="bench-sharedfs-${kind}-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
  vol="$work/vol-$kind"
  mkdir -p "$vol"
  cp "$work/round.sh" "$vol/round.sh"
  head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$vol/host-big"
  jq --arg k "$kind" '.sharedFs = $k' "$cfg" >"$work/$kind.json"
  log "$kind: starting a pod"
  tctr run -d --privileged --runtime io.containerd.csharp.v1 --runtime-config-path "$work/$kind.json" \
    --mount "type=bind,src=$vol,dst=/vol,options=rbind:rw" "$img" "$id" sleep 100000 </dev/null >/dev/null 2>"$work/err" \
    || die "$kind: ctr run failed: $(cat "$work/err")"
  for ((r = 1; r <= ROUNDS; r++)); do
    tctr tasks exec --exec-id "round$r" "$id" sh /vol/round.sh "$FILES" "$MIB" </dev/null >"$work/$kind.$r" 2>"$work/err" \
      || die "$kind: round $r failed: $(cat "$work/err")"
    log "$kind: round $r: $(tr '\n' ' ' <"$work/$kind.$r")"
  done
  for op in create stat unlink write read rootfs; do
    SECS[$kind.$op]="$(cat "$work/$kind".* | awk -v op="$op" '$1 == op { print $2 }' | median)"
  done
  tctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  deadline=$(( $(now_ms) + 60000 ))
  until [[ "$(tctr tasks ls | awk -v id="$id" '$1 == id { print $3 }')" == STOPPED ]] || (( $(now_ms) > deadline )); do sleep 0.1; done
  tctr tasks delete "$id" >/dev/null 2>&1 || true
  tctr containers delete "$id" >/dev/null 2>&1 || true
done

rate() { awk -v s="$1" -v m="$2" 'BEGIN { if (s == "" || s == "nan") print "-"; else if (s <= 0) print "<10ms"; else printf "%.1f", m / s }'; }
secs() { awk -v s="$1" 'BEGIN { if (s == "" || s == "nan") print "-"; else printf "%.2f s", s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan" || a <= 0 || b <= 0) print "-"; else printf "%.2fx", a / b }'; }

echo
echo "sharedFs benchmark: $(nproc) cores, $( [[ -e /dev/kvm ]] && echo '/dev/kvm present' || echo 'no KVM: QEMU uses TCG'), N=$FILES files, ${MIB} MiB, median of $ROUNDS rounds, guest clock"
printf '%-44s %12s %12s %16s\n' "operation (on a volume unless said)" "virtio-9p" "virtio-fs" "9p time / fs time"
row() { printf '%-44s %12s %12s %16s\n' "$1" "$(secs "${SECS[virtio-9p.$2]}")" "$(secs "${SECS[virtio-fs.$2]}")" "$(ratio "${SECS[virtio-9p.$2]}" "${SECS[virtio-fs.$2]}")"; }
row "create $FILES files of 1 KiB" create
row "ls -l of $FILES files, 3 times" stat
row "rm -r of $FILES files" unlink
row "write $MIB MiB (dd bs=1M, fsync)" write
row "read $MIB MiB written by the host (cold)" read
row "create $FILES files in the rootfs" rootfs
printf '%-44s %12s %12s\n' "write MiB/s" "$(rate "${SECS[virtio-9p.write]}" "$MIB")" "$(rate "${SECS[virtio-fs.write]}" "$MIB")"
printf '%-44s %12s %12s\n' "read MiB/s" "$(rate "${SECS[virtio-9p.read]}" "$MIB")" "$(rate "${SECS[virtio-fs.read]}" "$MIB")"
exit 0
