# shellcheck shell=bash
# build_setuid_image OUT_TAR [REF]: writes an OCI image-layout tarball for the privilege tests: /pause (the pause
# program of pause-image.sh, to keep a container running) and /euid, a static program owned by root with mode 4755
# (setuid root) that prints "euid=<effective uid> uid=<real uid>". Run as a non-root user, /euid shows whether a
# setuid binary escalates (noNewPrivileges false, no nosuid mount) or not. Built with gcc -static; cached like the
# other test images. REF defaults to localhost/csharp-e2e/setuid:1.
# Also runnable directly: bash eng/lib/setuid-image.sh OUT_TAR [REF]

if [[ -z "${_SHIMV2_SETUID_IMAGE_SH:-}" ]]; then
_SHIMV2_SETUID_IMAGE_SH=1
# shellcheck source=pause-image.sh
source "$(dirname "${BASH_SOURCE[0]}")/pause-image.sh"

SETUID_IMAGE_REF_DEFAULT="localhost/csharp-e2e/setuid:1"

_euid_source() {
  cat <<'C'
#include <stdio.h>
#include <unistd.h>

int main(void) {
  printf("euid=%d uid=%d\n", (int)geteuid(), (int)getuid());
  return 0;
}
C
}

# Runs in a subshell so its EXIT trap cleans the scratch dir without leaking into the caller.
build_setuid_image() (
  set -euo pipefail
  local out="$1" ref="${2:-$SETUID_IMAGE_REF_DEFAULT}"
  command -v gcc >/dev/null || die "gcc is not installed (needed to build the setuid image)"
  local dir stamp_want
  dir="$(dirname "${BASH_SOURCE[0]}")"
  stamp_want="$(_sha256 "${BASH_SOURCE[0]}") $(_sha256 "$dir/pause-image.sh") $(_sha256 "$dir/busybox-image.sh") $(gcc -dumpfullversion) $ref"
  if [[ -f "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp_want" ]]; then
    return 0
  fi

  local work; work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  local root="$work/rootfs"
  mkdir -p "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  _pause_source >"$work/pause.c"
  _euid_source >"$work/euid.c"
  gcc -static -Os -s -o "$root/pause" "$work/pause.c" || die "compiling pause.c failed"
  gcc -static -Os -s -o "$root/euid" "$work/euid.c" || die "compiling euid.c failed"
  chmod 0755 "$root/pause"
  chmod 4755 "$root/euid"
  printf 'root:x:0:0:root:/:/pause\nnobody:x:65534:65534:nobody:/:/pause\n' >"$root/etc/passwd"

  _oci_image_tarball "$root" "$work" "$out" "$ref" '"Entrypoint":["/pause"],"WorkingDir":"/"' "eng/lib/setuid-image.sh"
  printf '%s' "$stamp_want" >"$out.stamp"
)
fi

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  [[ $# -ge 1 ]] || { echo "usage: $0 OUT_TAR [REF]" >&2; exit 2; }
  build_setuid_image "$@"
fi
