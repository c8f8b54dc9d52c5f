#!/usr/bin/env bash
# Builds everything (eng/build.sh) and runs every test project of ShimV2.sln (unit + end-to-end, the end-to-end
# ones against Debian bookworm's containerd 1.6), then the end-to-end subset marked [Trait("containerd", "all")]
# (plus, per version, the tests marked [Trait("containerd", "<series>")], e.g. "2.1" for CRI tests the issue asks
# on 1.6 and 2.1 only) again against containerd 1.7 and 2.1 (fetched into a private cache by eng/lib/containerd-versions.sh, never
# installed). The end-to-end tests start their own private containerd and use artifacts/ (bin, guest, config).
# Prints a summary line "N passed, N failed, N skipped"; exits non-zero when a test fails or nothing ran.
# usage: eng/test.sh [--no-build] [extra dotnet test args, e.g. --filter FullyQualifiedName~EndToEnd]
#   E2E_RUNTIME=io.containerd.runc.v2 runs the end-to-end tests against runc (harness self-check).
#   E2E_OTHER_CONTAINERDS="1.7 2.1": the containerd series the subset also runs against ("" = none); the
#   default is "1.7 2.1" without extra args, none with them (a --filter run is about what it names).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/containerd.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/containerd-versions.sh"
cd "$REPO_ROOT"

if [[ "${1:-}" == --no-build ]]; then shift; else "$REPO_ROOT/eng/build.sh"; fi
if (( $# > 0 )); then other_containerds="${E2E_OTHER_CONTAINERDS-}"; else other_containerds="${E2E_OTHER_CONTAINERDS-1.7 2.1}"; fi
[[ -z "$other_containerds" ]] || ensure_containerd_versions

# The guest agent's VM tests boot the image eng/build.sh made (they default to artifacts/guest-image).
export CSHARP_GUEST_IMAGE="${CSHARP_GUEST_IMAGE:-$ARTIFACTS/guest}"
# The shim's binary tests run the NativeAOT executable operators install, not the build's apphost.
export CSHARP_SHIM_BINARY="${CSHARP_SHIM_BINARY:-$ARTIFACTS/bin/containerd-shim-csharp-v1}"

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
pass_times="ShimV2.sln (containerd 1.6): $(( ($(now_ms) - t0) / 1000 )) s"
containerd_reap_stale

# The subset on the other containerd versions, each against its own private containerd, each with its own TRX.
for series in $other_containerds; do
  t1=$(now_ms)
  echo
  echo "==> end-to-end subset against containerd $series ($(containerd_series_version "$(containerd_bin_dir "$series")"))"
  E2E_CONTAINERD="$series" timeout -s KILL "${TEST_SUBSET_TIMEOUT:-900}" \
    dotnet test tests/EndToEnd.Tests -c Release --no-build --nologo --filter "containerd=all|containerd=$series" \
      --results-directory "$results" --logger "trx;LogFileName=e2e-containerd-$series.trx" \
      --logger "console;verbosity=minimal" \
      --blame-hang-timeout "${TEST_HANG_TIMEOUT:-15m}" --blame-hang-dump-type none || rc=$?
  pass_times+=", containerd $series subset: $(( ($(now_ms) - t1) / 1000 )) s"
  containerd_reap_stale
done
secs=$(( ($(now_ms) - t0) / 1000 ))

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
echo "Test results: $files test runs, $total tests in ${secs} s (TRX files in $results)"
echo "Passes: $pass_times"
echo "$passed passed, $failed failed, $skipped skipped"
if (( rc == 0 && total == 0 )); then
  echo "ERROR: no test ran" >&2
  exit 1
fi
if (( rc == 0 && failed > 0 )); then rc=1; fi
exit "$rc"
