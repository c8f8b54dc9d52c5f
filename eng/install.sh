#!/usr/bin/env bash
# Installs the runtime on this node from artifacts/ (run eng/build.sh first):
#   /usr/local/bin/containerd-shim-csharp-v1         the shim (containerd finds it on PATH by runtime type)
#   /usr/share/csharp-shim/{vmlinuz,initrd.img}      the guest kernel and initramfs (agent inside)
#   /etc/containerd-shim-csharp/qemu.json            the hypervisor config (kept if it already exists)
# It does not edit containerd's config: the README shows the runtime handler to add.
# usage: eng/install.sh [--prefix DIR]      (DIR defaults to /; for packaging, e.g. --prefix /tmp/pkgroot)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/
if [[ "${1:-}" == --prefix ]]; then prefix="${2:?--prefix needs a directory}"; fi

art="$here/artifacts"
for f in bin/containerd-shim-csharp-v1 guest/vmlinuz guest/initrd.img; do
  [[ -s "$art/$f" ]] || { echo "install: $art/$f is missing: run eng/build.sh first" >&2; exit 1; }
done

bin="$prefix/usr/local/bin" share="$prefix/usr/share/csharp-shim" etc="$prefix/etc/containerd-shim-csharp"
install -d -m 0755 "$bin" "$share" "$etc"
install -m 0755 "$art/bin/containerd-shim-csharp-v1" "$bin/containerd-shim-csharp-v1"
install -m 0644 "$art/guest/vmlinuz" "$share/vmlinuz"
install -m 0644 "$art/guest/initrd.img" "$share/initrd.img"
if [[ -e "$etc/qemu.json" ]]; then
  echo "install: keeping existing $etc/qemu.json (the shipped default is $here/hypervisor-configs/qemu.json)"
else
  install -m 0644 "$here/hypervisor-configs/qemu.json" "$etc/qemu.json"
fi
echo "installed: $bin/containerd-shim-csharp-v1, $share/{vmlinuz,initrd.img}, $etc/qemu.json"
