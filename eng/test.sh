#!/usr/bin/env bash
# Builds everything (eng/build.sh) and runs every test project of ShimV2.sln (unit + end-to-end).
# The end-to-end tests start their own private containerd and use artifacts/ (bin, guest, config).
# Prints a summary line "N passed, N failed, N skipped"; exits non-zero when a test fails or nothing ran.
# usage: eng/test.sh [--no-build] [extra dotnet test args, e.g. --filter FullyQualifiedName~EndToEnd]
#   E2E_RUNTIME=io.containerd.runc.v2 runs the end-to-end tests against runc (harness self-check).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/containerd.sh"
cd "$REPO_ROOT"

if [[ "${1:-}" == --no-build ]]; then shift; else "$REPO_ROOT/eng/build.sh"; fi

# The guest agent's VM tests boot the image eng/build.sh made (they default to artifacts/guest-image).
export CSHARP_GUEST_IMAGE="${CSHARP_GUEST_IMAGE:-$ARTIFACTS/guest}"

results="$ARTIFACTS/test-results"
rm -rf "$results"; mkdir -p "$results"
containerd_reap_stale

t0=$(now_ms)
rc=0
# -m:1: one test assembly at a time, so unit tests don't steal the 2 cores from TCG-emulated VMs.
# The hang timeout bounds a stuck run (the E2E fixture still cleans up: only the hung test host is killed).
timeout -s KILL "${TEST_TIMEOUT:-1800}" \
  dotnet test ShimV2.sln -c Release --no-build -m:1 --nologo \
    --results-directory "$results" --logger "trx" --logger "console;verbosity=minimal" \
    --blame-hang-timeout "${TEST_HANG_TIMEOUT:-15m}" --blame-hang-dump-type none \
    "$@" || rc=$?
secs=$(( ($(now_ms) - t0) / 1000 ))
containerd_reap_stale

# Summary from the TRX files (one per test assembly).
passed=0 failed=0 skipped=0 total=0 files=0
shopt -s nullglob
for trx in "$results"/*.trx; do
  files=$((files + 1))
  counters="$(grep -o '<Counters [^>]*>' "$trx" | head -n1)"
  get() { sed -n "s/.* $1=\"\\([0-9]*\\)\".*/\\1/p" <<<"$counters"; }
  t="$(get total)"; p="$(get passed)"; f="$(get failed)"; e="$(get executed)"
  total=$((total + ${t:-0})); passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  skipped=$((skipped + ${t:-0} - ${e:-0}))
  # Errors/timeouts/aborts count as failures too.
  for k in error timeout aborted; do v="$(get $k)"; failed=$((failed + ${v:-0})); done
done
echo
echo "Test results: $files assemblies, $total tests in ${secs} s (TRX files in $results)"
echo "$passed passed, $failed failed, $skipped skipped"
if (( rc == 0 && total == 0 )); then
  echo "ERROR: no test ran" >&2
  exit 1
fi
if (( rc == 0 && failed > 0 )); then rc=1; fi
exit "$rc"
