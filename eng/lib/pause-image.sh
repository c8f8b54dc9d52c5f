# shellcheck shell=bash
# build_pause_image OUT_TAR [REF]: writes an OCI image-layout tarball holding one static program, /pause, for a
# CRI sandbox_image (there is no registry here to pull registry.k8s.io/pause from). Like Kubernetes' pause it
# sleeps until SIGINT/SIGTERM (then exits 0) and reaps children it inherits as PID 1. Built with gcc -static
# (gcc and libc6-dev are build dependencies). Cached like the busybox image: rebuilt only when this script or
# the compiler changes. REF defaults to localhost/csharp-e2e/pause:1.
# Also runnable directly: bash eng/lib/pause-image.sh OUT_TAR [REF]

if [[ -z "${_SHIMV2_PAUSE_IMAGE_SH:-}" ]]; then
_SHIMV2_PAUSE_IMAGE_SH=1
# shellcheck source=busybox-image.sh
source "$(dirname "${BASH_SOURCE[0]}")/busybox-image.sh"

PAUSE_IMAGE_REF_DEFAULT="localhost/csharp-e2e/pause:1"

_pause_source() {
  cat <<'C'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void done(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction stop = {.sa_handler = done};
  struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    return 1;
  }
  for (;;) {
    pause();
  }
}
C
}

# Runs in a subshell so its EXIT trap cleans the scratch dir without leaking into the caller.
build_pause_image() (
  set -euo pipefail
  local out="$1" ref="${2:-$PAUSE_IMAGE_REF_DEFAULT}"
  command -v gcc >/dev/null || die "gcc is not installed (needed to build the pause image)"
  local stamp_want
  # The packing lives in busybox-image.sh: a change there rebuilds this image too.
  stamp_want="$(_sha256 "${BASH_SOURCE[0]}") $(_sha256 "$(dirname "${BASH_SOURCE[0]}")/busybox-image.sh") $(gcc -dumpfullversion) $ref"
  if [[ -f "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp_want" ]]; then
    return 0
  fi

  local work; work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  local root="$work/rootfs"
  mkdir -p "$root"
  _pause_source >"$work/pause.c"
  gcc -static -Os -s -o "$root/pause" "$work/pause.c" || die "compiling pause.c failed"
  chmod 0755 "$root/pause"

  _oci_image_tarball "$root" "$work" "$out" "$ref" '"Entrypoint":["/pause"],"WorkingDir":"/"' "eng/lib/pause-image.sh"
  printf '%s' "$stamp_want" >"$out.stamp"
)
fi

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  [[ $# -ge 1 ]] || { echo "usage: $0 OUT_TAR [REF]" >&2; exit 2; }
  build_pause_image "$@"
fi
