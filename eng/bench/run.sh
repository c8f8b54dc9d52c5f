#!/usr/bin/env bash
# Benchmarks our runtime (io.containerd.csharp.v1) against runc (io.containerd.runc.v2) and gVisor (runsc as the
# OCI runtime of the runc shim) in ONE run, through private containerds (never the system one), the real `ctr` and a
# CRI client, and prints a table with ratios against runc. No thresholds: it measures.
#
# Through ctr (one private containerd, no CRI):
#   1. `ctr run --rm IMAGE ID true`, wall time: median of N runs per runtime (after one warm-up run each).
#   2. shim `start` latency: how long containerd's `<shim> ... start` invocation takes (containerd waits for it
#      before it can create the task). A wrapper first on containerd's PATH times the real binary's `start`.
#   3. memory while one `sleep` container runs: VmRSS of the shim daemon (again after the stdio runs of 4), of our
#      pod's QEMU, and the pod's PSS (the shim and every process under it: QEMU for ours, the container for runc,
#      runsc's sandbox and gofer).
#   4. stdio throughput in MiB/s: `ctr task exec ID cat` with M MiB in and out, and `head -c M MiB /dev/zero`
#      (stdout only). Each figure includes the exec's own start-up.
#   5. our boot timeline: the median of each phase the shim logs (`phase NAME at MS ms`) over the runs of 1.
#   Our runtime runs twice: `csharp` with the shipped config (pods restored from a VM template) and `csharp-cold`
#   with the same config but useTemplate off (every pod boots), for 1, 3 and 5 only.
# Through CRI (a second private containerd with its CRI plugin, CNI bridge; eng/lib/cri.sh), per runtime handler:
#   6. RunPodSandbox, and CreateContainer + StartContainer of a busybox `sleep`: medians of N pods (eng/bench/CriBench);
#      ours and runc (gVisor's CRI road is its own shim, which Debian does not package).
#   7. density (BENCH_DENSITY=K > 0): K idle pods of ours started one after another and kept alive, then an ExecSync in
#      each; how many answer, MemAvailable's drop per pod, PSS per pod.
#
# usage: eng/bench/run.sh [--no-build] [--runtimes "csharp csharp-cold runc runsc"] [--no-cri] [--markdown FILE] [--readme]
#   --markdown FILE  also write the results as Markdown to FILE
#   --readme         also put them into README.md, between <!-- bench:begin --> and <!-- bench:end -->
#   BENCH_N=5 (repetitions of 1, 2 and 6)   BENCH_MIB=100 (size for 4)   BENCH_TIMEOUT=300 (seconds per ctr command)
#   BENCH_DENSITY=0 (pods for 7; 0 skips it)   BENCH_STDIO_ONLY=1 (one warm-up run, no timings of 1-2, no CRI)
#   BENCH_CPU=1 (log the CPU seconds each stdio run cost the shim and each thread of the pod's QEMU)
# Runs as root (private containerds); builds first (eng/build.sh --no-sln) unless --no-build. Installs runsc (Debian's
# package) when it is asked for and missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/cri.sh"
cd "$REPO_ROOT"

do_build=1 do_cri=1 markdown="" readme=0
runtimes="csharp csharp-cold runc runsc"
while (( $# )); do
  case "$1" in
    --no-build) do_build=0 ;;
    --no-cri) do_cri=0 ;;
    --runtimes) runtimes="$2"; shift ;;
    --markdown) markdown="$2"; shift ;;
    --readme) readme=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
N="${BENCH_N:-5}"
MIB="${BENCH_MIB:-100}"
TMO="${BENCH_TIMEOUT:-300}"
DENSITY="${BENCH_DENSITY:-0}"
TIMED_RUNS="$N"; [[ -z "${BENCH_STDIO_ONLY:-}" ]] || { TIMED_RUNS=0; do_cri=0; }
(( EUID == 0 )) || die "the benchmark starts private containerds: run it as root"

if (( do_build )); then "$REPO_ROOT/eng/build.sh" --no-sln; fi
cfg="$ARTIFACTS/config/qemu.json"
real_shim="$ARTIFACTS/bin/containerd-shim-csharp-v1"
if [[ " $runtimes " == *" csharp"* ]]; then
  [[ -x "$real_shim" && -f "$cfg" ]] || die "$real_shim or $cfg missing: run eng/build.sh"
fi
real_runc_shim="$(command -v containerd-shim-runc-v2 || true)"
[[ ( " $runtimes " != *" runc "* && " $runtimes " != *" runsc "* ) || -n "$real_runc_shim" ]] || die "containerd-shim-runc-v2 is not installed"
runsc_bin=""
if [[ " $runtimes " == *" runsc "* ]]; then
  if ! command -v runsc >/dev/null; then
    log "installing runsc (gVisor) for the baseline"
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends runsc >/dev/null 2>&1 \
      || log "runsc could not be installed: gVisor left out"
  fi
  runsc_bin="$(command -v runsc || true)"
  [[ -n "$runsc_bin" ]] || runtimes="${runtimes/runsc/}"
fi

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

if [[ -f "$cfg" ]]; then
  python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["useTemplate"] = False; json.dump(c, open(sys.argv[2], "w"), indent=2)' \
    "$cfg" "$work/qemu-cold.json"
fi
CTRD_PATH_PREFIX="$work/wrap" containerd_start
import_busybox
img="$BUSYBOX_IMAGE_REF_DEFAULT"

# runsc (Debian's 2022 build) refuses the network namespaces ctr and containerd's CRI give it ("cannot run with network
# enabled in root network namespace"), so gVisor runs without a network in both: a note says so under the table.
if [[ -n "$runsc_bin" ]]; then
  printf '#!/bin/sh\nexec %s --network=none "$@"\n' "$runsc_bin" >"$work/runsc-ctr"
  chmod +x "$work/runsc-ctr"
fi
runtime_args() { # csharp|runc|runsc
  case "$1" in
    csharp) echo "--runtime io.containerd.csharp.v1 --runtime-config-path $cfg" ;;
    csharp-cold) echo "--runtime io.containerd.csharp.v1 --runtime-config-path $work/qemu-cold.json" ;;
    runc) echo "--runtime io.containerd.runc.v2" ;;
    runsc) echo "--runtime io.containerd.runc.v2 --runc-binary $work/runsc-ctr" ;;
  esac
}
shim_of() { [[ "$1" == csharp* ]] && echo csharp || echo runc; } # whose start wrapper log a runtime's starts land in
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# pss_tree_kib PID: the proportional set size of PID and all its descendants.
pss_tree_kib() {
  local pids="$1" frontier="$1" next p total=0
  while [[ -n "$frontier" ]]; do
    next=""
    for p in $frontier; do next+=" $(cat /proc/"$p"/task/*/children 2>/dev/null | tr '\n' ' ')"; done
    frontier="$(echo $next)"; pids+=" $frontier"
  done
  for p in $pids; do total=$(( total + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0) )); done
  echo "$total"
}
# thread_ticks PID: "TID COMM TICKS" for each thread of PID (user + system clock ticks).
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    awk '{ sub(/^[^(]*\(/, ""); comm = $0; sub(/\).*$/, "", comm); gsub(/ /, "_", comm); sub(/^.*\) /, "");
           print FILENAME, comm, $12 + $13 }' "$t/stat" 2>/dev/null | sed 's|/proc/[0-9]*/task/\([0-9]*\)/stat|\1|'
  done
}
# cpu_mark NAME PID...: remembers each thread's ticks; cpu_report NAME MS PID...: logs what each used since, in seconds.
cpu_mark() { local name="$1" p; shift; [[ -n "${BENCH_CPU:-}" ]] || return 0; for p; do thread_ticks "$p"; done >"$work/cpu-$name"; }
cpu_report() {
  local name="$1" ms="$2" p; shift 2; [[ -n "${BENCH_CPU:-}" ]] || return 0
  for p; do thread_ticks "$p"; done | awk -v hz="$(getconf CLK_TCK)" -v ms="$ms" -v name="$name" '
    NR == FNR { before[$1] = $3; next }
    { used = ($3 - before[$1]) / hz; if (used > 0) { by[$2] += used; total += used } }
    END { line = sprintf("cpu %s (%.2f s wall): %.2f s:", name, ms / 1000, total); for (c in by) line = line sprintf(" %s %.2f", c, by[c]); print line }
  ' "$work/cpu-$name" - >&2
}

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

stop_and_delete() { # ID
  tctr tasks kill -s SIGKILL "$1" >/dev/null 2>&1 || true
  local deadline=$(( $(now_ms) + 60000 ))
  until [[ "$(tctr tasks ls | awk -v id="$1" '$1 == id { print $3 }')" == STOPPED ]] || (( $(now_ms) > deadline )); do sleep 0.1; done
  tctr tasks delete "$1" >/dev/null 2>&1 || true
  tctr containers delete "$1" >/dev/null 2>&1 || true
}

declare -A RUN_MS START_US SHIM_RSS SHIM_RSS_AFTER QEMU_RSS POD_PSS CAT_MIBS OUT_MIBS CRI_SB_MS CRI_CT_MS CRI_PSS NULL_MIBS PIPE_MIBS NOTES PHASE_MS COLD_PHASE_MS
head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$work/data"
want_sum="$(sha256sum <"$work/data" | cut -d' ' -f1)"

for rt in $runtimes; do
  log_from=$(( $(wc -l <"$CTRD_LOG") + 1 ))
  log "$rt: warm-up run"
  # shellcheck disable=SC2046
  tctr run --rm $(runtime_args "$rt") "$img" "$(uniq_id "$rt")" true </dev/null >/dev/null 2>"$work/err" \
    || die "$rt: warm-up ctr run failed: $(cat "$work/err")"
  : >"$work/start-$(shim_of "$rt").us"
  times=()
  for ((i = 1; i <= TIMED_RUNS; i++)); do
    t0=$(now_ms)
    # shellcheck disable=SC2046
    tctr run --rm $(runtime_args "$rt") "$img" "$(uniq_id "$rt")" true </dev/null >/dev/null 2>"$work/err" \
      || die "$rt: ctr run failed: $(cat "$work/err")"
    times+=($(( $(now_ms) - t0 )))
  done
  RUN_MS[$rt]="$(printf '%s\n' "${times[@]}" | median)"
  START_US[$rt]="$(median <"$work/start-$(shim_of "$rt").us")"
  log "$rt: ctr run --rm true: ${times[*]} ms; shim start: $(tr '\n' ' ' <"$work/start-$(shim_of "$rt").us")us"
  if [[ "$rt" == csharp* ]]; then
    # The timeline of the runs above (and the warm-up's): every phase line our shim wrote to containerd's log.
    tail -n "+$log_from" "$CTRD_LOG" >"$work/phases.log"
    order="$( (grep -oE 'phase [a-z-]+ at' "$work/phases.log" || true) | awk '!seen[$2]++ { printf "%s ", $2 }')"
    for p in $order; do
      ms="$(grep -oE "phase $p at [0-9]+ ms" "$work/phases.log" | awk '{ print $4 }' | median)"
      if [[ "$rt" == csharp ]]; then PHASE_MS[$p]="$ms"; else COLD_PHASE_MS[$p]="$ms"; fi
    done
    if [[ "$rt" == csharp ]]; then phase_order="$order"; else cold_phase_order="$order"; fi
  fi

  id="$(uniq_id "$rt")"
  # shellcheck disable=SC2046
  tctr run -d $(runtime_args "$rt") "$img" "$id" sleep 1000 </dev/null >/dev/null 2>"$work/err" \
    || die "$rt: ctr run -d failed: $(cat "$work/err")"
  tpid="$(tctr tasks ls | awk -v id="$id" '$1 == id { print $2 }')"
  spid="$(shim_pid "$id" "$tpid")"
  SHIM_RSS[$rt]="$(rss_kib "$spid")"
  POD_PSS[$rt]="$(pss_tree_kib "$spid")"
  if [[ "$rt" == csharp* ]]; then
    QEMU_RSS[$rt]="$(rss_kib "$tpid")"   # the task pid of our runtime is the pod's QEMU
    [[ "$(cat "/proc/$tpid/comm" 2>/dev/null)" == qemu* ]] || NOTES[$rt]+="task pid $tpid is not QEMU; "
  fi
  log "$rt: task pid $tpid, shim pid $spid"
  if [[ "$rt" == csharp-cold ]]; then
    stop_and_delete "$id"
    continue # stdio does not depend on how the VM started: measured once, with the shipped config
  fi

  cpu_mark cat "$tpid" "$spid"
  t0=$(now_ms)
  got_sum="$(tctr tasks exec --exec-id cat "$id" cat <"$work/data" | sha256sum | cut -d' ' -f1)"
  ms=$(( $(now_ms) - t0 ))
  cpu_report cat "$ms" "$tpid" "$spid"
  [[ "$got_sum" == "$want_sum" ]] || NOTES[$rt]+="cat returned different bytes; "
  CAT_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$ms" 'BEGIN { printf "%.1f", m * 1000 / ms }')"

  cpu_mark out "$tpid" "$spid"
  t0=$(now_ms)
  got="$(tctr tasks exec --exec-id out "$id" head -c "$((MIB * 1024 * 1024))" /dev/zero </dev/null | wc -c)"
  ms=$(( $(now_ms) - t0 ))
  cpu_report out "$ms" "$tpid" "$spid"
  [[ "$got" == "$((MIB * 1024 * 1024))" ]] || NOTES[$rt]+="stdout gave $got bytes; "
  OUT_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$ms" 'BEGIN { printf "%.1f", m * 1000 / ms }')"

  t0=$(now_ms)
  tctr tasks exec --exec-id null "$id" sh -c "head -c $((MIB * 1024 * 1024)) /dev/zero >/dev/null" </dev/null >/dev/null
  NULL_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$(( $(now_ms) - t0 ))" 'BEGIN { printf "%.1f", m * 1000 / ms }')"
  t0=$(now_ms)
  tctr tasks exec --exec-id pipe "$id" sh -c "head -c $((MIB * 1024 * 1024)) /dev/zero | cat >/dev/null" </dev/null >/dev/null
  PIPE_MIBS[$rt]="$(awk -v m="$MIB" -v ms="$(( $(now_ms) - t0 ))" 'BEGIN { printf "%.1f", m * 1000 / ms }')"
  SHIM_RSS_AFTER[$rt]="$(rss_kib "$spid")"
  log "$rt: cat ${CAT_MIBS[$rt]}, head ${OUT_MIBS[$rt]}, head >/dev/null ${NULL_MIBS[$rt]}, head | cat >/dev/null ${PIPE_MIBS[$rt]} MiB/s"

  stop_and_delete "$id"
done


if (( do_cri )); then
  containerd_stop
  # gVisor's CRI road is its own shim (containerd-shim-runsc-v1, which Debian does not package): under the runc shim
  # a pod's containers each get a sandbox of their own and StartContainer hangs. So CRI compares ours with runc.
  cri_runtimes="${runtimes/runsc/}"; cri_runtimes="${cri_runtimes/csharp-cold/}"
  log "CRI: a private containerd with its CRI plugin (handlers: $cri_runtimes)"
  cri_start
  dotnet build "$REPO_ROOT/eng/bench/CriBench/CriBench.csproj" -c Release --nologo -v q -o "$work/cribench" >"$work/cribench.log" 2>&1 \
    || die "building eng/bench/CriBench failed: $(tail -5 "$work/cribench.log")"
  mkdir -p "$work/pods"
  "$work/cribench/CriBench" --socket "$CTRD_SOCK" --image "$BUSYBOX_IMAGE_REF_DEFAULT" --pods-dir "$work/pods" \
    --handlers "$cri_runtimes" --n "$N" --density "$DENSITY" --density-handler csharp >"$work/cri.tsv" \
    || die "CRI benchmark failed (containerd log: $CTRD_LOG)"
  for rt in $cri_runtimes; do
    CRI_SB_MS[$rt]="$(awk -v r="$rt" '$1 == "pod" && $2 == r { print $3 }' "$work/cri.tsv" | median)"
    CRI_CT_MS[$rt]="$(awk -v r="$rt" '$1 == "pod" && $2 == r { print $4 }' "$work/cri.tsv" | median)"
    CRI_PSS[$rt]="$(awk -v r="$rt" '$1 == "pod" && $2 == r { print $5 }' "$work/cri.tsv" | median)"
  done
  read -r _ _ D_STARTED D_ANSWERING D_DROP D_PSS D_FAIL < <(awk '$1 == "density"' "$work/cri.tsv"; echo) || true
  [[ "${D_FAIL:-}" != "-" ]] || D_FAIL=""
fi

fmt_ms() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "-"; else if (v >= 1000) printf "%.2f s", v / 1000; else printf "%.0f ms", v }'; }
fmt_us() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "-"; else printf "%.1f ms", v / 1000 }'; }
fmt_kib() { awk -v v="$1" 'BEGIN { if (v == "" || v == 0 || v == "nan") print "-"; else printf "%.1f MiB", v / 1024 }'; }
fmt_n() { [[ -n "$1" && "$1" != nan ]] && echo "$1" || echo "-"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan" || a == "-" || b == "-" || b == 0) print "-"; else if (a / b < 1) printf "%.2fx", a / b; else printf "%.1fx", a / b }'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan") print ""; else print a + b }'; }

# One row per metric: name, then raw value and formatter per runtime (csharp runc runsc); ratios against runc.
rows=()
row() { # NAME FMT VALUE_csharp VALUE_runc VALUE_runsc
  rows+=("$1|$($2 "$3")|$($2 "$4")|$($2 "$5")|$(ratio "$3" "$4")|$(ratio "$5" "$4")")
}
has() { [[ " $runtimes " == *" $1 "* ]]; }
v() { local -n arr="$1"; has "$2" && echo "${arr[$2]:-}" || echo ""; }
row "\`ctr run --rm true\` (median of $N)" fmt_ms "$(v RUN_MS csharp)" "$(v RUN_MS runc)" "$(v RUN_MS runsc)"
if has csharp-cold; then
  row "\`ctr run --rm true\`, every VM booted (no template)" fmt_ms "$(v RUN_MS csharp-cold)" "$(v RUN_MS runc)" "$(v RUN_MS runsc)"
fi
row "shim \`start\` invocation (median of $N)" fmt_us "$(v START_US csharp)" "$(v START_US runc)" "$(v START_US runsc)"
row "shim daemon VmRSS, 1 pod" fmt_kib "$(v SHIM_RSS csharp)" "$(v SHIM_RSS runc)" "$(v SHIM_RSS runsc)"
row "shim daemon VmRSS after the stdio rows below" fmt_kib "$(v SHIM_RSS_AFTER csharp)" "$(v SHIM_RSS_AFTER runc)" "$(v SHIM_RSS_AFTER runsc)"
row "QEMU VmRSS, 1 idle pod" fmt_kib "$(v QEMU_RSS csharp)" "" ""
if has csharp-cold; then
  row "QEMU VmRSS, 1 idle pod, VM booted (no template)" fmt_kib "$(v QEMU_RSS csharp-cold)" "" ""
fi
row "pod PSS (shim and all under it), ctr" fmt_kib "$(v POD_PSS csharp)" "$(v POD_PSS runc)" "$(v POD_PSS runsc)"
row "exec \`cat\` ${MIB} MiB in and out (MiB/s)" fmt_n "$(v CAT_MIBS csharp)" "$(v CAT_MIBS runc)" "$(v CAT_MIBS runsc)"
row "exec \`head -c ${MIB}M\` out (MiB/s)" fmt_n "$(v OUT_MIBS csharp)" "$(v OUT_MIBS runc)" "$(v OUT_MIBS runsc)"
row "ceiling: \`head >/dev/null\` (MiB/s)" fmt_n "$(v NULL_MIBS csharp)" "$(v NULL_MIBS runc)" "$(v NULL_MIBS runsc)"
row "ceiling: \`head\` piped to \`cat >/dev/null\` (MiB/s)" fmt_n "$(v PIPE_MIBS csharp)" "$(v PIPE_MIBS runc)" "$(v PIPE_MIBS runsc)"
if (( do_cri )); then
  row "CRI RunPodSandbox (median of $N)" fmt_ms "$(v CRI_SB_MS csharp)" "$(v CRI_SB_MS runc)" "$(v CRI_SB_MS runsc)"
  row "CRI CreateContainer + StartContainer" fmt_ms "$(v CRI_CT_MS csharp)" "$(v CRI_CT_MS runc)" "$(v CRI_CT_MS runsc)"
  row "CRI pod ready (sandbox + container)" fmt_ms "$(sum "$(v CRI_SB_MS csharp)" "$(v CRI_CT_MS csharp)")" \
    "$(sum "$(v CRI_SB_MS runc)" "$(v CRI_CT_MS runc)")" "$(sum "$(v CRI_SB_MS runsc)" "$(v CRI_CT_MS runsc)")"
  row "CRI pod PSS (shim and all under it)" fmt_kib "$(v CRI_PSS csharp)" "$(v CRI_PSS runc)" "$(v CRI_PSS runsc)"
fi

machine="containerd $(containerd --version | awk '{ print $3 }'), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $( [[ -e /dev/kvm ]] && echo '/dev/kvm present (auto decides)' || echo 'no KVM: QEMU uses TCG'), BENCH_N=$N, BENCH_MIB=$MIB, $(date -u +%F)"
echo
echo "$machine"
printf '%-52s %12s %12s %12s %12s %12s\n' "metric" "csharp" "runc" "runsc" "csharp/runc" "runsc/runc"
for r in "${rows[@]}"; do IFS='|' read -r a b c d e f <<<"$r"; printf '%-52s %12s %12s %12s %12s %12s\n' "$a" "$b" "$c" "$d" "$e" "$f"; done
if [[ -n "${phase_order:-}" ]]; then
  echo; echo "our boot timeline, median ms since the shim began the sandbox (ctr run): "
  for p in $phase_order; do printf '  %-22s %8s ms\n' "$p" "${PHASE_MS[$p]}"; done
fi
if [[ -n "${cold_phase_order:-}" ]]; then
  echo; echo "the same, every VM booted (no template): "
  for p in $cold_phase_order; do printf '  %-22s %8s ms\n' "$p" "${COLD_PHASE_MS[$p]}"; done
fi
if [[ -n "${D_STARTED:-}" ]]; then
  echo; echo "density: $D_STARTED of $DENSITY idle pods started, $D_ANSWERING answered ExecSync; MemAvailable dropped $(( D_DROP / 1024 )) MiB ($(( D_DROP / 1024 / (D_STARTED > 0 ? D_STARTED : 1) )) MiB/pod); PSS $(( D_PSS / 1024 / (D_STARTED > 0 ? D_STARTED : 1) )) MiB/pod${D_FAIL:+; first failure: $D_FAIL}"
fi
if has runsc; then NOTES[runsc]+="runsc runs with --network=none (its 2022 build refuses containerd's network namespaces), through ctr only (its CRI road is containerd-shim-runsc-v1, which Debian does not package); "; fi
for rt in $runtimes; do
  if [[ -n "${NOTES[$rt]:-}" ]]; then echo "note ($rt): ${NOTES[$rt]}"; fi
done

md="$work/bench.md"
{
  echo "Measured by \`eng/bench/run.sh\` on $machine."
  echo
  echo "| metric | csharp | runc | runsc (gVisor) | csharp/runc | runsc/runc |"
  echo "|---|---|---|---|---|---|"
  for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
  if [[ -n "${phase_order:-}" ]]; then
    echo
    echo "Our boot timeline (median ms since the shim began the sandbox, \`ctr run\`):"
    echo
    echo "| $(echo $phase_order | sed 's/ / | /g') |"
    echo "|$(for _ in $phase_order; do printf -- '---|'; done)"
    echo "| $(for p in $phase_order; do printf '%s | ' "${PHASE_MS[$p]}"; done | sed 's/ | $//') |"
  fi
  if [[ -n "${cold_phase_order:-}" ]]; then
    echo
    echo "The same, every VM booted (no template):"
    echo
    echo "| $(echo $cold_phase_order | sed 's/ / | /g') |"
    echo "|$(for _ in $cold_phase_order; do printf -- '---|'; done)"
    echo "| $(for p in $cold_phase_order; do printf '%s | ' "${COLD_PHASE_MS[$p]}"; done | sed 's/ | $//') |"
  fi
  if [[ -n "${D_STARTED:-}" ]]; then
    echo
    echo "Density: $D_STARTED of $DENSITY idle pods started and kept alive at once, $D_ANSWERING answered an ExecSync; memory per pod $(( D_DROP / 1024 / (D_STARTED > 0 ? D_STARTED : 1) )) MiB (MemAvailable's drop), $(( D_PSS / 1024 / (D_STARTED > 0 ? D_STARTED : 1) )) MiB PSS${D_FAIL:+; first failure: $D_FAIL}."
  fi
  for rt in $runtimes; do
    if [[ -n "${NOTES[$rt]:-}" ]]; then echo; echo "Note ($rt): ${NOTES[$rt]%; }."; fi
  done
} >"$md"
if [[ -n "$markdown" ]]; then cp "$md" "$markdown"; fi
if (( readme )); then
  grep -q '<!-- bench:begin -->' README.md && grep -q '<!-- bench:end -->' README.md || die "README.md has no <!-- bench:begin --> ... <!-- bench:end --> block"
  awk -v f="$md" '/<!-- bench:begin -->/ { print; while ((getline l < f) > 0) print l; skip = 1; next } /<!-- bench:end -->/ { skip = 0 } !skip' README.md >"$work/README.md"
  cp "$work/README.md" README.md
  log "README.md's benchmark block updated"
fi
exit 0
