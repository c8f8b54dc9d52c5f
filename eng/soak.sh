#!/usr/bin/env bash
# The leak soak of issue 10: the cycle tests at full counts (100 create/delete cycles through ctr, with 100 execs in
# the last pod, and 20 pods through CRI) against containerd 1.6, then the leak report they wrote. Each pod restores a
# VM from its template (about 2 s under TCG; 6-13 s when it boots): the full soak takes about 6 min (15-30 min with
# useTemplate off). Run it under the heavy lock on a shared machine:
#   flock /tmp/shimv2-heavy.lock eng/soak.sh
# usage: eng/soak.sh [--no-build]    counts: E2E_CYCLES_CTR (100), E2E_CYCLES_EXEC (100), E2E_CYCLES_CRI (20)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/containerd.sh"
cd "$REPO_ROOT"

if [[ "${1:-}" == --no-build ]]; then shift; else "$REPO_ROOT/eng/build.sh"; fi
export E2E_CYCLES_CTR="${E2E_CYCLES_CTR:-100}" E2E_CYCLES_EXEC="${E2E_CYCLES_EXEC:-100}" E2E_CYCLES_CRI="${E2E_CYCLES_CRI:-20}"
export E2E_LOG_DIR="$ARTIFACTS/test-results/soak"
rm -rf "$E2E_LOG_DIR"; mkdir -p "$E2E_LOG_DIR"
containerd_reap_stale

t0=$(now_ms)
rc=0
timeout -s KILL "${SOAK_TIMEOUT:-7200}" \
  dotnet test tests/EndToEnd.Tests -c Release --no-build --nologo \
    --filter "FullyQualifiedName~LeakCycleTests" \
    --results-directory "$E2E_LOG_DIR" --logger "trx;LogFileName=soak.trx" --logger "console;verbosity=normal" \
    --blame-hang-timeout "${TEST_HANG_TIMEOUT:-90m}" --blame-hang-dump-type none || rc=$?
containerd_reap_stale

# Both cycle tests must have run to their end: a skipped test (no root, no artifacts, no CNI plugins) or one that
# failed before its report would otherwise read as "no leak".
report="$E2E_LOG_DIR/leak-report.txt"
for what in "ctr cycles $E2E_CYCLES_CTR:" "CRI pods $E2E_CYCLES_CRI:"; do
  if ! grep -qF "$what" "$report" 2>/dev/null; then
    echo "soak: no \"$what\" line in the leak report: that cycle test did not run to its end (skipped or failed)" >&2
    (( rc != 0 )) || rc=1
  fi
done

echo
echo "==> leak report (ctr cycles $E2E_CYCLES_CTR, execs $E2E_CYCLES_EXEC, CRI pods $E2E_CYCLES_CRI; $(( ($(now_ms) - t0) / 1000 )) s)"
if [[ -s "$E2E_LOG_DIR/leak-report.txt" ]]; then cat "$E2E_LOG_DIR/leak-report.txt"; else echo "(no report: the cycle tests failed before the end)"; fi
(( rc == 0 )) && echo "soak passed: no leak" || echo "soak FAILED (exit $rc): see $E2E_LOG_DIR"
exit "$rc"
