# shellcheck shell=bash
# Shared helpers for eng/*.sh. Source it; it defines functions and REPO_ROOT, nothing runs.
# Quiet by default (set VERBOSE=1 to see everything); errors are always loud.

if [[ -n "${_SHIMV2_COMMON_SH:-}" ]]; then return 0; fi
_SHIMV2_COMMON_SH=1

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARTIFACTS="${ARTIFACTS:-$REPO_ROOT/artifacts}"
export REPO_ROOT ARTIFACTS
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

log()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# run_quiet DESCRIPTION CMD...: runs CMD with its output captured; prints it only when CMD fails
# (or always with VERBOSE=1). Returns CMD's status.
run_quiet() {
  local what="$1"; shift
  if [[ "${VERBOSE:-0}" == 1 ]]; then
    log "$what"
    "$@"
    return
  fi
  local out rc=0
  out="$(mktemp)"
  "$@" >"$out" 2>&1 || rc=$?
  if (( rc != 0 )); then
    printf 'ERROR: %s failed (exit %d): %s\n' "$what" "$rc" "$*" >&2
    printf -- '----- output -----\n' >&2
    tail -n 200 "$out" >&2
    printf -- '------------------\n' >&2
  fi
  rm -f "$out"
  return "$rc"
}

# now_ms: wall clock in milliseconds.
now_ms() { date +%s%3N; }

# wait_until DEADLINE_SECONDS DESCRIPTION CMD...: polls CMD (every 50 ms) until it succeeds or the deadline passes.
wait_until() {
  local secs="$1" what="$2"; shift 2
  local deadline=$(( $(now_ms) + secs * 1000 ))
  until "$@" >/dev/null 2>&1; do
    if (( $(now_ms) > deadline )); then
      printf 'ERROR: timed out after %ss waiting for %s\n' "$secs" "$what" >&2
      return 1
    fi
    sleep 0.05
  done
}
