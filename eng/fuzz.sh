#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read untrusted bytes (tests/Fuzz: TTRPC server and client, the agent's
# request decoding, OCI JSON, QMP, netlink), with AFL++ and SharpFuzz. Installs what it needs (apt afl++, the
# SharpFuzz.CommandLine dotnet tool), publishes tests/Fuzz, instruments our assemblies, runs each target for N
# inputs starting from its corpus (tests/Fuzz/corpus/<target>), and copies every crash or hang into
# tests/Fuzz/regressions/<target>/ (ShimV2.Fuzz.Tests replays them, with the corpus, in every test run).
# Prints one line per target: inputs run, crashes, hangs; writes them to artifacts/fuzz/summary.tsv.
# usage: eng/fuzz.sh [--no-build] [--inputs N] [TARGET...]     (default: 1000000 inputs, every target)
#   --no-build: reuse the instrumented build of an earlier run (artifacts/fuzz/bin)
#   FUZZ_MAX_SECONDS=S: stop a target after S seconds even if it has not run N inputs (the summary says how many it ran)
# CPU-heavy: run it under the heavy lock, one target per hold on a shared machine:
#   flock /tmp/shimv2-heavy.lock eng/fuzz.sh ttrpc-server
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARTIFACTS="$REPO_ROOT/artifacts"
cd "$REPO_ROOT"

inputs="${FUZZ_INPUTS:-1000000}"
build=1
if [[ "${1:-}" == --no-build ]]; then build=0; shift; fi
if [[ "${1:-}" == --inputs ]]; then inputs="$2"; shift 2; fi
all_targets=(ttrpc-server ttrpc-client agent-requests oci-spec qmp netlink)
targets=("$@")
(( ${#targets[@]} > 0 )) || targets=("${all_targets[@]}")

if ! command -v afl-fuzz >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++ >/dev/null
fi

work="$ARTIFACTS/fuzz"
tools="$work/tools"
if [[ ! -x "$tools/sharpfuzz" ]]; then
  dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$tools" >/dev/null
fi

# A fresh publish each run: SharpFuzz rewrites the assemblies in place and refuses to do it twice.
bin="$work/bin"
[[ -f "$bin/ShimV2.Fuzz.dll" ]] || build=1
if (( build )); then
rm -rf "$bin"
mkdir -p "$work"
dotnet publish tests/Fuzz/ShimV2.Fuzz.csproj -c Release -o "$bin" --nologo > "$work/publish.log" 2>&1 \
  || { tail -n 20 "$work/publish.log" >&2; exit 1; }
for assembly in ShimV2.Ttrpc ShimV2.Hypervisor ShimV2.Netlink ShimV2.Shim csharp-agent Google.Protobuf; do
  "$tools/sharpfuzz" "$bin/$assembly.dll" >> "$work/publish.log" 2>&1 \
    || { echo "sharpfuzz could not instrument $assembly.dll: see $work/publish.log" >&2; exit 1; }
done
fi

summary="$work/summary.tsv"
[[ -f "$summary" ]] || printf 'target\tinputs\tcrashes\thangs\tseconds\tdate\n' > "$summary"
status=0
for target in "${targets[@]}"; do
  corpus="tests/Fuzz/corpus/$target"
  [[ -d "$corpus" ]] || { echo "unknown target $target (targets: ${all_targets[*]})" >&2; exit 2; }
  findings="$work/findings/$target"
  rm -rf "$findings"; mkdir -p "$work/findings"
  start=$(date +%s)
  # AFL_SKIP_BIN_CHECK: the binary is dotnet, instrumented at the IL level by SharpFuzz, not by afl-cc.
  AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
    afl-fuzz -i "$corpus" -o "$findings" -E "$inputs" ${FUZZ_MAX_SECONDS:+-V "$FUZZ_MAX_SECONDS"} -t 10000 -m none -- "$(command -v dotnet)" "$bin/ShimV2.Fuzz.dll" "$target" \
    > "$work/$target.log" 2>&1 || { echo "afl-fuzz failed for $target: see $work/$target.log" >&2; tail -n 20 "$work/$target.log" >&2; exit 1; }
  seconds=$(( $(date +%s) - start ))
  stats="$findings/default/fuzzer_stats"
  execs=$(awk -F: '/^execs_done/ {gsub(/ /, "", $2); print $2}' "$stats")
  crashes=$(awk -F: '/^saved_crashes/ {gsub(/ /, "", $2); print $2}' "$stats")
  hangs=$(awk -F: '/^saved_hangs/ {gsub(/ /, "", $2); print $2}' "$stats")
  regressions="tests/Fuzz/regressions/$target"
  for kind in crashes hangs; do
    for f in "$findings/default/$kind"/id:*; do
      [[ -f "$f" ]] || continue
      mkdir -p "$regressions"
      cp "$f" "$regressions/$kind-$(sha1sum "$f" | cut -c1-12)"
    done
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$execs" "$crashes" "$hangs" "$seconds" "$(date -u +%F)" >> "$summary"
  echo "$target: $execs inputs, $crashes crashes, $hangs hangs, ${seconds} s"
  (( crashes == 0 && hangs == 0 )) || status=1
done
exit "$status"
