#!/usr/bin/env bash
# Benchmarks our runtime (io.containerd.csharp.v1) against runc (io.containerd.runc.v2) in ONE run, through one
# private containerd (never the system one) and the real `ctr`, and prints a small table. No thresholds.
#
#   1. `ctr run --rm IMAGE ID true`, wall time: median of N runs per runtime (after one warm-up run each), and the ratio.
#   2. shim `start` latency: how long containerd's `<shim> ... start` invocation takes (containerd waits for it
#      before it can create the task). Measured by a wrapper placed first on containerd's PATH that times the real
#      binary's `start` (all other invocations exec the real binary directly); median of the same N runs.
#   3. memory while one `sleep` container runs: VmRSS of the shim daemon serving it (the parent of the task pid, or
#      the process whose argv names the container) and, for our runtime, of the pod's QEMU.
#   4. stdio throughput in MiB/s: `ctr task exec ID cat` with M MiB in and out (host → guest → host), and
#      `ctr task exec ID head -c M MiB /dev/zero` (stdout only). Each figure includes the exec's own start-up.
#      The ceiling rows run the same work with its output sent to /dev/null inside the container (`head >/dev/null`,
#      `head | cat >/dev/null`): what the runtime's stdio forwarding could reach if it cost nothing.
#
# usage: eng/bench/run.sh [--no-build] [--runtimes "csharp runc"]
#   BENCH_N=5 (repetitions of 1-2)   BENCH_MIB=100 (size for 4)   BENCH_TIMEOUT=300 (seconds per ctr command)
#   BENCH_STDIO_ONLY=1 (only 4: one warm-up run, no timings of 1-2)
# Runs as root (a private containerd); builds first (eng/build.sh --no-sln) unless --no-build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/containerd.sh"
cd "$REPO_ROOT"

do_build=1
runtimes="csharp runc"
while (( $# )); do
  case "$1" in
    --no-build) do_build=0 ;;
    --runtimes) runtimes="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
N="${BENCH_N:-5}"
MIB="${BENCH_MIB:-100}"
TMO="${BENCH_TIMEOUT:-300}"
TIMED_RUNS="$N"; [[ -z "${BENCH_STDIO_ONLY:-}" ]] || TIMED_RUNS=0
(( EUID == 0 )) || die "the benchmark starts a private containerd: run it as root"

if (( do_build )); then "$REPO_ROOT/eng/build.sh" --no-sln; fi
cfg="$ARTIFACTS/config/qemu.json"
real_shim="$ARTIFACTS/bin/containerd-shim-csharp-v1"
if [[ " $runtimes " == *" csharp "* ]]; then
  [[ -x "$real_shim" && -f "$cfg" ]] || die "$real_shim or $cfg missing: run eng/build.sh"
fi
real_runc_shim="$(command -v containerd-shim-runc-v2 || true)"
[[ " $runtimes " != *" runc "* || -n "$real_runc_shim" ]] || die "containerd-shim-runc-v2 is not installed"

work="$(mktemp -d /tmp/csharp-bench.XXXXXX)"
cleanup() { containerd_stop; rm -rf "$work"; }
containerd_reap_stale
trap cleanup EXIT

# Timing wrappers, first on containerd's PATH: they time `start` and exec everything else unchanged.
mkdir -p "$work/wrap"
make_wrapper() { # NAME REAL LOG
  cat >"$work/wrap/$1" <<EOF
#!/bin/bash
if [[ "\${!#}" == start ]]; then
  t0=\$(date +%s%N)
  "$2" "\$@"
  rc=\$?
  echo \$(( (\$(date +%s%N) - t0) / 1000 )) >>"$3"
  exit \$rc
fi
exec "$2" "\$@"
EOF
  chmod +x "$work/wrap/$1"
}
if [[ -x "$real_shim" ]]; then make_wrapper containerd-shim-csharp-v1 "$real_shim" "$work/start-csharp.us"; fi
if [[ -n "$real_runc_shim" ]]; then make_wrapper containerd-shim-runc-v2 "$real_runc_shim" "$work/start-runc.us"; fi

CTRD_PATH_PREFIX="$work/wrap" containerd_start
import_busybox
img="$BUSYBOX_IMAGE_REF_DEFAULT"

runtime_args() { # csharp|runc
  case "$1" in
    csharp) echo "--runtime io.containerd.csharp.v1 --runtime-config-path $cfg" ;;
    runc) echo "--runtime io.containerd.runc.v2" ;;
  esac
}
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
uniq_id() { echo "bench-$1-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"; }
tctr() { timeout -s KILL "$TMO" ctr --address "$CTRD_SOCK" --namespace "$CTRD_NS" "$@"; }

# shim_pid ID TASKPID: the shim daemon serving ID: the task pid's parent if it is a containerd shim, else a
# containerd-shim-* process whose argv names the container.
shim_pid() {
  local id="$1" tpid="$2" ppid d cmd
  ppid="$(awk '/^PPid:/ { print $2 }' "/proc/$tpid/status" 2>/dev/null || true)"
  if [[ -n "$ppid" && "$(tr '\0' ' ' <"/proc/$ppid/cmdline" 2>/dev/null)" == *containerd-shim* ]]; then
    echo "$ppid"; return
  fi
  for d in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" || continue
    [[ "$cmd" == *containerd-shim* && "$cmd" == *" -id $id "* ]] && { echo "${d#/proc/}"; return; }
  done
  echo 0
}

declare -A RUN_MS START_US SHIM_RSS QEMU_RSS CAT_MIBS OUT_MIBS NULL_MIBS PIPE_MIBS NOTES
head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$work/data"
want_sum="$(sha256sum <"$work/data" | cut -d' ' -f1)"

for rt in $runtimes; do
  log "$rt: warm-up run"
  # shellcheck disable=SC2046
  tctr run --rm $(runtime_args "$rt") "$img" "$(uniq_id "$rt")" true </dev/null >/dev/null 2>"$work/err" \
    || die "$rt: warm-up ctr run failed: $(cat "$work/err")"
  : >"$work/start-$rt.us"
  times=()
  for ((i = 1; i <= TIMED_RUNS; i++)); do
    t0=$(now_ms)
    # shellcheck disable=SC2046
    tctr run --rm $(runtime_args "$rt") "$img" "$(uniq_id "$rt")" true </dev/null >/dev/null 2>"$work/err" \
      || die "$rt: ctr run failed: $(cat "$work/err")"
    times+=($(( $(now_ms) - t0 )))
  done
  RUN_MS[$rt]="$(printf '%s\n' "${times[@]}" | median)"
  START_US[$rt]="$(median <"$work/start-$rt.us")"
  log "$rt: ctr run --rm true: ${times[*]} ms; shim start: $(tr '\n' ' ' <"$work/start-$rt.us")us"

  id="$(uniq_id "$rt")"
  # shellcheck disable=SC2046
  tctr run -d $(runtime_args "$rt") "$img" "$id" sleep 1000 </dev/null >/dev/null 2>"$work/err" \
    || die "$rt: ctr run -d failed: $(cat "$work/err")"
  tpid="$(tctr tasks ls | awk -v id="$id" '$1 == id { print $2 }')"
  spid="$(shim_pid "$id" "$tpid")"
  SHIM_RSS[$rt]="$(rss_kib "$spid")"
  if [[ "$rt" == csharp ]]; then
    QEMU_RSS[$rt]="$(rss_kib "$tpid")"   # the task pid of our runtime is the pod's QEMU
    [[ "$(cat "/proc/$tpid/comm" 2>/dev/null)" == qemu* ]] || NOTES[$rt]+="task pid $tpid is not QEMU; "
  fi
  log "$rt: task pid $tpid, shim pid $spid"

  t0=$(now_ms)
  got_sum="$(tctr tasks exec --exec-id cat "$id" cat <"$work/data" | sha256sum | cut -d' ' -f1)"
  ms=$(( $(now_ms) - t0 ))
  [[ "$got_sum" == "$want_sum" ]] || NOTES[$rt]+="cat returned different bytes; "
  CAT_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$ms" 'BEGIN { printf "%.1f", m * 1000 / ms }')"

  t0=$(now_ms)
  got="$(tctr tasks exec --exec-id out "$id" head -c "$((MIB * 1024 * 1024))" /dev/zero </dev/null | wc -c)"
  ms=$(( $(now_ms) - t0 ))
  [[ "$got" == "$((MIB * 1024 * 1024))" ]] || NOTES[$rt]+="stdout gave $got bytes; "
  OUT_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$ms" 'BEGIN { printf "%.1f", m * 1000 / ms }')"

  t0=$(now_ms)
  tctr tasks exec --exec-id null "$id" sh -c "head -c $((MIB * 1024 * 1024)) /dev/zero >/dev/null" </dev/null >/dev/null
  NULL_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$(( $(now_ms) - t0 ))" 'BEGIN { printf "%.1f", m * 1000 / ms }')"
  t0=$(now_ms)
  tctr tasks exec --exec-id pipe "$id" sh -c "head -c $((MIB * 1024 * 1024)) /dev/zero | cat >/dev/null" </dev/null >/dev/null
  PIPE_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$(( $(now_ms) - t0 ))" 'BEGIN { printf "%.1f", m * 1000 / ms }')"
  log "$rt: cat ${CAT_MIBS[$rt]}, head ${OUT_MIBS[$rt]}, head >/dev/null ${NULL_MIBS[$rt]}, head | cat >/dev/null ${PIPE_MIBS[$rt]} MiB/s"

  tctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  deadline=$(( $(now_ms) + 60000 ))
  until [[ "$(tctr tasks ls | awk -v id="$id" '$1 == id { print $3 }')" == STOPPED ]] || (( $(now_ms) > deadline )); do sleep 0.1; done
  tctr tasks delete "$id" >/dev/null 2>&1 || true
  tctr containers delete "$id" >/dev/null 2>&1 || true
done

fmt_ms() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "-"; else if (v >= 1000) printf "%.2f s", v / 1000; else printf "%.0f ms", v }'; }
fmt_us() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "-"; else printf "%.1f ms", v / 1000 }'; }
fmt_kib() { awk -v v="$1" 'BEGIN { if (v == "" || v == 0) print "-"; else printf "%.1f MiB", v / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan" || b == 0) print "-"; else if (a / b < 1) printf "%.2fx", a / b; else printf "%.1fx", a / b }'; }

echo
echo "containerd $(containerd --version | awk '{ print $3 }'), $(nproc) cores, $( [[ -e /dev/kvm ]] && echo KVM || echo 'no KVM: QEMU uses TCG'), N=$N, ${MIB} MiB"
printf '%-40s %14s %14s %10s\n' "metric" "csharp" "runc" "csharp/runc"
printf '%-40s %14s %14s %10s\n' "ctr run --rm true (median of $N)" "$(fmt_ms "${RUN_MS[csharp]:-}")" "$(fmt_ms "${RUN_MS[runc]:-}")" "$(ratio "${RUN_MS[csharp]:-}" "${RUN_MS[runc]:-}")"
printf '%-40s %14s %14s %10s\n' "shim start invocation (median of $N)" "$(fmt_us "${START_US[csharp]:-}")" "$(fmt_us "${START_US[runc]:-}")" "$(ratio "${START_US[csharp]:-}" "${START_US[runc]:-}")"
printf '%-40s %14s %14s %10s\n' "shim daemon VmRSS (1 sandbox)" "$(fmt_kib "${SHIM_RSS[csharp]:-}")" "$(fmt_kib "${SHIM_RSS[runc]:-}")" "$(ratio "${SHIM_RSS[csharp]:-}" "${SHIM_RSS[runc]:-}")"
printf '%-40s %14s %14s %10s\n' "QEMU VmRSS (1 sandbox)" "$(fmt_kib "${QEMU_RSS[csharp]:-}")" "-" "-"
printf '%-40s %14s %14s %10s\n' "exec cat ${MIB} MiB in+out (MiB/s)" "${CAT_MIBS[csharp]:--}" "${CAT_MIBS[runc]:--}" "$(ratio "${CAT_MIBS[csharp]:-}" "${CAT_MIBS[runc]:-}")"
printf '%-40s %14s %14s %10s\n' "exec stdout ${MIB} MiB (MiB/s)" "${OUT_MIBS[csharp]:--}" "${OUT_MIBS[runc]:--}" "$(ratio "${OUT_MIBS[csharp]:-}" "${OUT_MIBS[runc]:-}")"
printf '%-40s %14s %14s %10s\n' "ceiling: head >/dev/null (MiB/s)" "${NULL_MIBS[csharp]:--}" "${NULL_MIBS[runc]:--}" "$(ratio "${NULL_MIBS[csharp]:-}" "${NULL_MIBS[runc]:-}")"
printf '%-40s %14s %14s %10s\n' "ceiling: head | cat >/dev/null (MiB/s)" "${PIPE_MIBS[csharp]:--}" "${PIPE_MIBS[runc]:--}" "$(ratio "${PIPE_MIBS[csharp]:-}" "${PIPE_MIBS[runc]:-}")"
for rt in $runtimes; do
  if [[ -n "${NOTES[$rt]:-}" ]]; then echo "note ($rt): ${NOTES[$rt]}"; fi
done
exit 0
