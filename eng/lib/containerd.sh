# shellcheck shell=bash
# A private containerd for the demo, the benchmarks and manual end-to-end checks. It never touches a system
# containerd: its own root, state, sockets and config live in a temp dir, and it finds our shim through PATH
# (artifacts/bin first). Source it, then:
#
#   containerd_start            # sets CTRD_DIR, CTRD_SOCK, CTRD_PID, CTRD_LOG, CTRD_CTR (that version's ctr) and
#                               # CTRD_VERSION; returns once `ctr version` answers
#                               # (CTRD_BIN_DIR: the directory of the containerd and ctr to run, default the ones on
#                               #  PATH, i.e. Debian's 1.6; containerd-versions.sh's containerd_bin_dir 1.7|2.1 gives
#                               #  the others. 2.x gets a version 3 config, 1.x version 2;
#                               #  CTRD_CRI_STANZA: a TOML file appended to the config, with the CRI plugins then
#                               #  left enabled (to check that a version loads a CRI runtime stanza);
#                               #  CTRD_DIR_TEMPLATE: mktemp template of the dir, default /tmp/csharp-ctrd.XXXXXX;
#                               #  CTRD_OWNER_PID: the process whose death makes the dir stale, default this shell;
#                               #  CTRD_PATH_PREFIX: directories put before artifacts/bin on containerd's PATH;
#                               #  CTRD_PREPARE: a function run once CTRD_DIR exists, before the config is
#                               #  written; it may set CTRD_CRI_STANZA (eng/lib/cri.sh's cri_start uses it))
#   ctrd [ctr args...]          # ctr against the private containerd (namespace $CTRD_NS, default "default")
#   import_busybox [REF]        # builds the busybox OCI tarball (cached) and imports it; REF defaults to
#                               # docker.io/library/busybox:csharp
#   containerd_restart          # SIGTERM to containerd, then the same containerd again on the same dirs (shims live on)
#   containerd_halt / containerd_relaunch  # the two halves of a restart, for an outage of a chosen length
#   containerd_stop             # kills containerd, leftover shims and QEMUs, unmounts, removes CTRD_DIR
#   containerd_reap_stale       # cleans up private containerds whose owner died (killed test host, ^C'd demo)
#
# containerd_stop is safe to call twice and from an EXIT trap.

if [[ -n "${_SHIMV2_CONTAINERD_SH:-}" ]]; then return 0; fi
_SHIMV2_CONTAINERD_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=busybox-image.sh
source "$(dirname "${BASH_SOURCE[0]}")/busybox-image.sh"

CTRD_NS="${CTRD_NS:-default}"
# Where the C# shim keeps per-sandbox state (its contract with this harness).
SHIM_SANDBOX_ROOT="${SHIM_SANDBOX_ROOT:-/run/containerd-shim-csharp}"
# Where containerd 1.6 shims (runc's convention) put their sockets.
SHIM_SOCKET_DIR="${SHIM_SOCKET_DIR:-/run/containerd/s}"

# _containerd_config VERSION: the config of a private containerd of that version (x.y.z) on stdout.
# 1.x reads config version 2; 2.x reads version 3 (it would migrate a version 2 file on every start, and its CRI
# is three plugins there: the grpc service, io.containerd.cri.v1.runtime and .images, all disabled here).
_containerd_config() {
  local version="$1" config_version=2 disabled='"io.containerd.grpc.v1.cri"'
  if [[ "$version" != 1.* ]]; then
    config_version=3
    disabled='"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.podsandbox.controller.v1.podsandbox"'
  fi
  [[ -n "${CTRD_CRI_STANZA:-}" ]] && disabled=""
  cat <<TOML
version = $config_version
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = [$disabled]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "${CTRD_LOG_LEVEL:-info}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
TOML
  if [[ -n "${CTRD_CRI_STANZA:-}" ]]; then
    echo
    cat "$CTRD_CRI_STANZA"
  fi
}

containerd_start() {
  local containerd=containerd
  CTRD_CTR=ctr
  if [[ -n "${CTRD_BIN_DIR:-}" ]]; then
    containerd="$CTRD_BIN_DIR/containerd" CTRD_CTR="$CTRD_BIN_DIR/ctr"
    [[ -x "$containerd" && -x "$CTRD_CTR" ]] || die "no containerd and ctr in CTRD_BIN_DIR=$CTRD_BIN_DIR"
  fi
  command -v "$containerd" >/dev/null || die "containerd is not installed"
  command -v "$CTRD_CTR" >/dev/null || die "ctr is not installed"
  CTRD_CTR="$(command -v "$CTRD_CTR")"
  [[ -z "${CTRD_DIR:-}" ]] || die "containerd_start: a private containerd is already running in $CTRD_DIR"
  CTRD_VERSION="$("$containerd" --version | awk '{ v = $3; sub(/[~+].*/, "", v); print v; exit }')"
  [[ "$CTRD_VERSION" =~ ^[0-9]+\.[0-9]+ ]] || die "cannot tell the version of $containerd: $("$containerd" --version 2>&1)"
  CTRD_DIR="$(mktemp -d "${CTRD_DIR_TEMPLATE:-/tmp/csharp-ctrd.XXXXXX}")"
  CTRD_SOCK="$CTRD_DIR/containerd.sock"
  CTRD_LOG="$CTRD_DIR/containerd.log"
  export CTRD_DIR CTRD_SOCK CTRD_LOG CTRD_CTR CTRD_VERSION
  if [[ -n "${CTRD_PREPARE:-}" ]]; then "$CTRD_PREPARE" || die "containerd_start: $CTRD_PREPARE failed"; fi
  _containerd_config "$CTRD_VERSION" >"$CTRD_DIR/config.toml"
  # containerd_stop (and containerd_reap_stale, which knows only the dir) use this version's ctr.
  ln -s "$CTRD_CTR" "$CTRD_DIR/ctr"
  # The version's own directory first: its containerd-shim-runc-v2 is the one that matches it.
  local path="${CTRD_PATH_PREFIX:+$CTRD_PATH_PREFIX:}${CTRD_BIN_DIR:+$CTRD_BIN_DIR:}$ARTIFACTS/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  # containerd_restart starts the same binary with the same PATH.
  printf '%s\n%s\n' "$containerd" "$path" >"$CTRD_DIR/launch"
  echo "${CTRD_OWNER_PID:-$$}" >"$CTRD_DIR/owner.pid"
  : >"$CTRD_LOG"
  _containerd_launch "$containerd" "$path"
}

# _containerd_launch BINARY PATH [ARG...]: starts containerd on $CTRD_DIR's config (and ARGs), appending to
# $CTRD_LOG, records CTRD_PID, and returns once `ctr version` answers.
_containerd_launch() {
  local containerd="$1" path="$2"
  shift 2
  # setsid: containerd gets its own session, so a terminal's ^C reaches only us and our trap cleans up.
  PATH="$path" setsid "$containerd" --config "$CTRD_DIR/config.toml" "$@" >>"$CTRD_LOG" 2>&1 </dev/null &
  CTRD_PID=$!
  export CTRD_PID
  echo "$CTRD_PID" >"$CTRD_DIR/containerd.pid"
  local deadline=$(( $(now_ms) + 30000 ))
  until "$CTRD_CTR" --address "$CTRD_SOCK" version >/dev/null 2>&1; do
    if ! kill -0 "$CTRD_PID" 2>/dev/null; then
      tail -n 50 "$CTRD_LOG" >&2
      die "containerd exited during startup (log above, $CTRD_LOG)"
    fi
    if (( $(now_ms) > deadline )); then
      tail -n 50 "$CTRD_LOG" >&2
      die "containerd did not answer on $CTRD_SOCK within 30 s"
    fi
    sleep 0.05
  done
}

# containerd_restart: stops the running private containerd (SIGTERM; shims and their VMs live on, as under a
# node's `systemctl restart containerd`) and starts it again on the same config, root, state and log; prints the
# new pid. Needs CTRD_DIR, CTRD_SOCK, CTRD_PID and CTRD_CTR (or CTRD_DIR/ctr).
containerd_restart() {
  containerd_halt && containerd_relaunch
}

# containerd_halt: the first half of a restart: SIGTERM to containerd and wait until it is gone (SIGKILL after
# 10 s). Its shims live on and find no containerd until containerd_relaunch (an outage of any length).
containerd_halt() {
  [[ -n "${CTRD_DIR:-}" && -f "$CTRD_DIR/launch" ]] || die "containerd_halt: no private containerd in CTRD_DIR=${CTRD_DIR:-}"
  if [[ -n "${CTRD_PID:-}" ]] && kill -0 "$CTRD_PID" 2>/dev/null; then
    kill -TERM "$CTRD_PID"
    local deadline=$(( $(now_ms) + 10000 ))
    while kill -0 "$CTRD_PID" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$CTRD_PID/status" 2>/dev/null; do
      (( $(now_ms) < deadline )) || { kill -KILL "$CTRD_PID" 2>/dev/null || true; break; }
      sleep 0.05
    done
  fi
}

# containerd_relaunch: the second half: the same containerd again on the same config, root, state and log; prints
# the new pid as CTRD_PID=N. CTRD_RELAUNCH_LOG_LEVEL: this run's log level instead of the config's (e.g. trace,
# where containerd 1.7 and 2.x log each event a shim forwards).
containerd_relaunch() {
  [[ -n "${CTRD_DIR:-}" && -f "$CTRD_DIR/launch" ]] || die "containerd_relaunch: no private containerd in CTRD_DIR=${CTRD_DIR:-}"
  [[ -n "${CTRD_CTR:-}" ]] || CTRD_CTR="$CTRD_DIR/ctr"
  CTRD_LOG="${CTRD_LOG:-$CTRD_DIR/containerd.log}"
  local containerd path
  { read -r containerd; read -r path; } <"$CTRD_DIR/launch"
  _containerd_launch "$containerd" "$path" ${CTRD_RELAUNCH_LOG_LEVEL:+--log-level "$CTRD_RELAUNCH_LOG_LEVEL"}
  echo "CTRD_PID=$CTRD_PID"
}

ctrd() { "${CTRD_CTR:-ctr}" --address "$CTRD_SOCK" --namespace "$CTRD_NS" "$@"; }

import_busybox() {
  local ref="${1:-$BUSYBOX_IMAGE_REF_DEFAULT}"
  local tarball="$ARTIFACTS/images/busybox-oci.tar"
  build_busybox_image "$tarball" "$ref" || die "building the busybox image failed"
  run_quiet "ctr images import $tarball" ctrd images import --all-platforms "$tarball" \
    || die "ctr images import failed"
  ctrd images ls -q | grep -xF "$ref" >/dev/null || die "import did not create image $ref (have: $(ctrd images ls -q | tr '\n' ' '))"
}

# _descendants PID...: prints the given pids and all their descendants.
_descendants() {
  local -A parent=()
  local d pid ppid stat
  for d in /proc/[0-9]*; do
    stat="$(cat "$d/stat" 2>/dev/null)" || continue
    stat="${stat##*) }"            # fields after "(comm) "
    ppid="$(cut -d' ' -f2 <<<"$stat")"
    parent[${d#/proc/}]="$ppid"
  done
  local -a queue=("$@") out=()
  local -A seen=()
  while (( ${#queue[@]} )); do
    pid="${queue[0]}"; queue=("${queue[@]:1}")
    [[ -n "${seen[$pid]:-}" ]] && continue
    seen[$pid]=1; out+=("$pid")
    for d in "${!parent[@]}"; do
      [[ "${parent[$d]}" == "$pid" ]] && queue+=("$d")
    done
  done
  printf '%s\n' "${out[@]}"
}

# _pids_matching STRING...: pids whose command line contains any STRING (never our own shell).
_pids_matching() {
  local d cmd s
  for d in /proc/[0-9]*; do
    [[ "${d#/proc/}" == "$$" || "${d#/proc/}" == "$BASHPID" ]] && continue
    cmd="$( { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null)" || continue
    [[ -z "$cmd" ]] && continue
    for s in "$@"; do
      [[ -n "$s" && "$cmd" == *"$s"* ]] && { echo "${d#/proc/}"; break; }
    done
  done
}

_unmount_under() {
  local base="$1" mp
  [[ -d "$base" ]] || return 0
  # Deepest first; mountinfo field 5 is the mount point (octal-escaped spaces are rare here).
  while IFS= read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || warn "could not unmount $mp"
  done < <(awk -v b="$base" '$5 == b || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

containerd_stop() {
  [[ -n "${CTRD_DIR:-}" ]] || return 0
  local dir="$CTRD_DIR" ids=() ns id ctr="${CTRD_CTR:-ctr}"
  [[ -x "$CTRD_DIR/ctr" ]] && ctr="$CTRD_DIR/ctr"
  if [[ -n "${CTRD_PID:-}" ]] && kill -0 "$CTRD_PID" 2>/dev/null; then
    # Give shims a chance to clean up their own VMs: kill and delete what is left, briefly.
    local nss; nss="$(timeout -s KILL 5 "$ctr" --address "$CTRD_SOCK" namespaces ls -q 2>/dev/null)" || nss=""
    for ns in $nss; do
      for id in $(timeout -s KILL 5 "$ctr" --address "$CTRD_SOCK" -n "$ns" containers ls -q 2>/dev/null); do
        ids+=("$ns/$id")
        timeout -s KILL 10 "$ctr" --address "$CTRD_SOCK" -n "$ns" tasks kill -s KILL "$id" >/dev/null 2>&1 || true
        timeout -s KILL 10 "$ctr" --address "$CTRD_SOCK" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
        timeout -s KILL 10 "$ctr" --address "$CTRD_SOCK" -n "$ns" containers delete "$id" >/dev/null 2>&1 || true
      done
    done
    kill -TERM "$CTRD_PID" 2>/dev/null || true
    local deadline=$(( $(now_ms) + 5000 ))
    while kill -0 "$CTRD_PID" 2>/dev/null && (( $(now_ms) < deadline )); do sleep 0.05; done
    kill -KILL "$CTRD_PID" 2>/dev/null || true
    wait "$CTRD_PID" 2>/dev/null || true
  fi
  # Bundles left in state name the containers too (if containerd was already gone).
  local b
  for b in "$dir"/state/io.containerd.runtime.v2.task/*/*; do
    [[ -d "$b" ]] || continue
    ids+=("$(basename "$(dirname "$b")")/$(basename "$b")")
  done
  # Leftover shims (their argv names our socket), their children (QEMU), and QEMUs naming our sandboxes.
  local patterns=("$dir/") nsid
  for nsid in "${ids[@]}"; do patterns+=("$SHIM_SANDBOX_ROOT/${nsid#*/}"); done
  # Shims exit by themselves shortly after their last Delete/Shutdown: give them a moment first.
  local -a roots=() victims=()
  local deadline=$(( $(now_ms) + 3000 ))
  while :; do
    mapfile -t roots < <(_pids_matching "${patterns[@]}")
    (( ${#roots[@]} == 0 || $(now_ms) > deadline )) && break
    sleep 0.05
  done
  if (( ${#roots[@]} )); then
    mapfile -t victims < <(_descendants "${roots[@]}")
    warn "killing leftover processes: $(for p in "${victims[@]}"; do { tr '\0' ' ' <"/proc/$p/cmdline" | head -c 120; } 2>/dev/null; echo -n '; '; done)"
    kill -KILL "${victims[@]}" 2>/dev/null || true
    local p alive
    deadline=$(( $(now_ms) + 5000 ))
    while (( $(now_ms) < deadline )); do
      alive=0
      for p in "${victims[@]}"; do [[ -d /proc/$p ]] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && alive=1; done
      (( alive )) || break
      sleep 0.05
    done
  fi
  # Sandbox dirs and shim sockets of our containers, then everything under our dir.
  for nsid in "${ids[@]}"; do
    id="${nsid#*/}"; ns="${nsid%%/*}"
    [[ -n "$id" ]] || continue
    if [[ -e "$SHIM_SANDBOX_ROOT/$id" ]]; then
      _unmount_under "$SHIM_SANDBOX_ROOT/$id"
      rm -rf --one-file-system "${SHIM_SANDBOX_ROOT:?}/$id"
    fi
    local sock; sock="$SHIM_SOCKET_DIR/$(printf '%s' "$dir/containerd.sock/$ns/$id" | sha256sum | cut -d' ' -f1)"
    rm -f "$sock"
  done
  # A CRI containerd's CNI bridge (the bridge plugin creates it and never removes it).
  local bridge; bridge="$(cat "$dir/cni-bridge" 2>/dev/null)" || bridge=""
  if [[ -n "$bridge" ]] && ip link show "$bridge" >/dev/null 2>&1; then
    ip link delete "$bridge" 2>/dev/null || warn "could not delete CNI bridge $bridge"
  fi
  _unmount_under "$dir"
  rm -rf --one-file-system "$dir" 2>/dev/null || { _unmount_under "$dir"; rm -rf --one-file-system "$dir" || warn "could not remove $dir"; }
  unset CTRD_DIR CTRD_SOCK CTRD_PID CTRD_LOG CTRD_CTR CTRD_VERSION
}

# containerd_reap_stale: stops private containerds (ours and the E2E harness's, /tmp/csharp-ctrd.* and
# /tmp/csharp-e2e.*) whose owner process is gone, e.g. after a test host was killed. Each such dir has
# containerd.pid and owner.pid files.
containerd_reap_stale() {
  local d owner
  for d in /tmp/csharp-ctrd.* /tmp/csharp-e2e.*; do
    [[ -d "$d" && -f "$d/owner.pid" ]] || continue
    owner="$(cat "$d/owner.pid" 2>/dev/null)"
    [[ -n "$owner" && -d "/proc/$owner" ]] && continue
    warn "reaping stale private containerd in $d (owner $owner is gone)"
    (
      CTRD_DIR="$d" CTRD_SOCK="$d/containerd.sock" CTRD_PID="$(cat "$d/containerd.pid" 2>/dev/null)"
      # Only signal the recorded pid if it still is a containerd using this dir.
      if [[ -n "$CTRD_PID" ]] && ! tr '\0' ' ' <"/proc/$CTRD_PID/cmdline" 2>/dev/null | grep -qF "$d/config.toml"; then
        CTRD_PID=""
      fi
      containerd_stop
    )
  done
}
