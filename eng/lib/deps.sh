# shellcheck shell=bash
# ensure_deps: installs the Debian packages the build, the tests and the demo need (root, Debian 12).
# `apt-get update` runs only when something is missing. Source it, then call ensure_deps.
# clang (compiler driver and linker front end) and zlib1g-dev are what NativeAOT links the shim and the agent with.

if [[ -n "${_SHIMV2_DEPS_SH:-}" ]]; then return 0; fi
_SHIMV2_DEPS_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=virtiofsd.sh
source "$(dirname "${BASH_SOURCE[0]}")/virtiofsd.sh"

SHIMV2_APT_PACKAGES=(
  qemu-system-x86 qemu-utils linux-image-amd64 busybox-static
  containerd runc cpio kmod gcc make libc6-dev socat jq procps util-linux iproute2
  containernetworking-plugins
  clang zlib1g-dev
)

_pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

ensure_deps() {
  command -v dpkg-query >/dev/null || die "not a Debian system (no dpkg-query): install ${SHIMV2_APT_PACKAGES[*]} by hand"
  local missing=() p
  for p in "${SHIMV2_APT_PACKAGES[@]}"; do
    _pkg_installed "$p" || missing+=("$p")
  done
  if (( ${#missing[@]} == 0 )); then
    # The virtio-fs tests and benchmark need a virtiofsd (qemu-system-x86 brings Debian 12's).
    virtiofsd_path >/dev/null || ensure_virtiofsd || die "no virtiofsd (needed for sharedFs virtio-fs)"
    return 0
  fi
  (( EUID == 0 )) || die "missing packages ${missing[*]}; run as root (or install them) first"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run_quiet "apt-get update" apt-get update -q || die "apt-get update failed"
  run_quiet "apt-get install ${missing[*]}" \
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" || die "apt-get install failed"
  # The Debian package starts a system containerd; we never use it, but leave it alone (we must not touch it).
  ensure_virtiofsd || die "no virtiofsd (needed for sharedFs virtio-fs)"
}
