# shellcheck shell=bash
# ensure_virtiofsd: makes sure a virtiofsd that runs on this node is installed (sharedFs virtio-fs needs one).
# Where the shim looks (HypervisorConfig.virtiofsdPath empty): /usr/libexec/virtiofsd (the Rust one, Debian 13's
# `virtiofsd` package), then /usr/lib/qemu/virtiofsd (the C one of QEMU 7.2, Debian 12's qemu-system-common).
# Only the node's own release is used: Debian 13's virtiofsd needs glibc 2.39 and does not run on Debian 12.
# Returns 0 when one runs; prints why not and returns 1 otherwise. Needs root to install.

_virtiofsd_runs() { [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1; }

virtiofsd_path() {
  local p
  for p in /usr/libexec/virtiofsd /usr/lib/qemu/virtiofsd; do
    if _virtiofsd_runs "$p"; then echo "$p"; return 0; fi
  done
  return 1
}

ensure_virtiofsd() {
  virtiofsd_path >/dev/null && return 0
  if (( EUID != 0 )); then
    echo "virtiofsd is missing: as root, apt-get install virtiofsd (Debian 13+) or qemu-system-common (Debian 12)" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local pkgs=(qemu-system-common)
  # Debian 12's virtiofsd comes with QEMU; Debian 13+ ships it as its own package. Not on 12 even when a newer
  # suite is configured: that build needs a newer libc.
  [[ "$(cat /etc/debian_version 2>/dev/null)" == 12* ]] || pkgs+=(virtiofsd)
  local pkg
  for pkg in "${pkgs[@]}"; do
    if apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 && virtiofsd_path >/dev/null; then
      return 0
    fi
  done
  echo "virtiofsd could not be installed (apt-get install virtiofsd / qemu-system-common): sharedFs virtio-fs will not work" >&2
  return 1
}
