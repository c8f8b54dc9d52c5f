#!/usr/bin/env bash
# Boots a busybox container in a QEMU VM through containerd and our shim, and shows that it ran in a VM.
#   deps + build, a private containerd (never the system one), busybox image import, then
#   ctr run --rm --runtime io.containerd.csharp.v1 --runtime-config-path artifacts/config/qemu.json ...
# Exits with ctr's status. Everything is stopped and removed on exit.
# usage: eng/demo.sh [--no-build]        (DEMO_TIMEOUT=seconds, default 180)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/containerd.sh"
cd "$REPO_ROOT"

if [[ "${1:-}" != --no-build ]]; then
  "$REPO_ROOT/eng/build.sh"
fi
cfg="$ARTIFACTS/config/qemu.json"
[[ -f "$cfg" ]] || die "$cfg missing: run eng/build.sh"
[[ -x "$ARTIFACTS/bin/containerd-shim-csharp-v1" ]] || die "shim missing: run eng/build.sh"

containerd_reap_stale
trap containerd_stop EXIT
containerd_start
import_busybox

id="demo-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
log "host kernel: $(uname -r)"
log "ctr run --rm --runtime io.containerd.csharp.v1 --runtime-config-path $cfg docker.io/library/busybox:csharp $id ..."
t0=$(now_ms)
rc=0
timeout -s KILL "${DEMO_TIMEOUT:-180}" \
  ctr --address "$CTRD_SOCK" run --rm \
    --runtime io.containerd.csharp.v1 --runtime-config-path "$cfg" \
    docker.io/library/busybox:csharp "$id" \
    sh -c 'echo "kernel: $(uname -r)"; echo "hostname: $(hostname)"' </dev/null || rc=$?
t1=$(now_ms)
ms=$(( t1 - t0 ))
printf '==> ctr exited %d after %d.%03d s (wall, including VM boot)\n' "$rc" $(( ms / 1000 )) $(( ms % 1000 )) >&2
# The shim says in containerd's log which accelerator the pod VM got and why (KVM, or TCG and the reason).
accel_line="$(grep -o 'vm [^ ]*: accelerator [^"]*' "$CTRD_LOG" | tail -n 1 || true)"
[[ -n "$accel_line" ]] && log "containerd's log: $accel_line"
if (( rc == 137 )); then
  warn "ctr was killed after ${DEMO_TIMEOUT:-180} s"
fi
if (( rc != 0 )); then
  warn "last lines of the containerd log ($CTRD_LOG):"
  tail -n 40 "$CTRD_LOG" >&2 || true
fi
exit "$rc"
