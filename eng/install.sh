#!/usr/bin/env bash
# Installs the runtime on this node from artifacts/ (run eng/build.sh first):
#   ROOT/usr/local/bin/containerd-shim-csharp-v1         the shim (containerd finds it on PATH by runtime type)
#   ROOT/usr/share/csharp-shim/{vmlinux,initrd.img}      the guest kernel (PVH ELF) and initramfs; with a generic-kernel
#                                                        image (GUEST_KERNEL=generic eng/build.sh) also vmlinuz
#   ROOT/usr/share/csharp-shim/image.manifest            which kernel the image has, and what it was built from
#   ROOT/etc/containerd-shim-csharp/qemu.json            the hypervisor config (kept if it already exists)
# It does not edit containerd's config: the README shows the runtime handler to add.
#
# usage: eng/install.sh [--prefix ROOT | --destdir DIR]      (artifacts from $ARTIFACTS, default <repo>/artifacts)
#   --prefix ROOT   install under ROOT (default /) and run from there: the installed qemu.json names the kernel
#                   and initrd under ROOT. Point containerd at it with ROOT/usr/local/bin on its PATH (or
#                   runtime_path) and ConfigPath = "ROOT/etc/containerd-shim-csharp/qemu.json".
#   --destdir DIR   stage for a package: the files go under DIR, but qemu.json names their final places
#                   (/usr/share/csharp-shim/...), as DESTDIR does for `make install`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '10,15p' "$0" >&2; exit 2; }

root=/ staging=0
while (( $# )); do
  case "$1" in
    --prefix) root="${2:?--prefix needs a directory}"; staging=0; shift 2 ;;
    --destdir) root="${2:?--destdir needs a directory}"; staging=1; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install: unknown argument: $1" >&2; usage ;;
  esac
done
[[ "$root" == /* ]] || root="$(pwd)/$root"
root="${root%/}"

art="${ARTIFACTS:-$here/artifacts}"
for f in bin/containerd-shim-csharp-v1 guest/initrd.img; do
  [[ -s "$art/$f" ]] || { echo "install: $art/$f is missing: run eng/build.sh first" >&2; exit 1; }
done
[[ -s "$art/guest/vmlinux" || -s "$art/guest/vmlinuz" ]] || { echo "install: $art/guest has no kernel: run eng/build.sh first" >&2; exit 1; }
command -v jq >/dev/null || { echo "install: jq is not installed (apt-get install jq)" >&2; exit 1; }
# shellcheck source=lib/virtiofsd.sh
source "$here/eng/lib/virtiofsd.sh"

bin="$root/usr/local/bin" share="$root/usr/share/csharp-shim" etc="$root/etc/containerd-shim-csharp"
# Where the config says the guest image is: the final place when staging a package, else where it is installed.
runtime_share="$share"
(( staging )) && runtime_share=/usr/share/csharp-shim
install -d -m 0755 "$bin" "$share" "$etc"
install -m 0755 "$art/bin/containerd-shim-csharp-v1" "$bin/containerd-shim-csharp-v1"
# The PVH kernel the default config boots; the generic kernel's image also has vmlinuz (for the firmware boot). A
# kernel the new image lacks goes, so an old one is never booted with this initrd.
for k in vmlinux vmlinuz; do
  if [[ -s "$art/guest/$k" ]]; then install -m 0644 "$art/guest/$k" "$share/$k"; else rm -f "$share/$k"; fi
done
install -m 0644 "$art/guest/initrd.img" "$share/initrd.img"
if [[ -f "$art/guest/image.manifest" ]]; then install -m 0644 "$art/guest/image.manifest" "$share/image.manifest"; fi
if [[ -e "$etc/qemu.json" ]]; then
  echo "install: keeping existing $etc/qemu.json (the shipped default is $here/hypervisor-configs/qemu.json)"
else
  tmp="$(mktemp "$etc/.qemu.json.XXXXXX")"
  kernel_file="$(jq -r '.kernelPath | split("/") | last' "$here/hypervisor-configs/qemu.json")"
  [[ -s "$share/$kernel_file" ]] || kernel_file=$( [[ -s "$share/vmlinux" ]] && echo vmlinux || echo vmlinuz )
  if ! jq --arg k "$runtime_share/$kernel_file" --arg i "$runtime_share/initrd.img" \
      '.kernelPath = $k | .initrdPath = $i' "$here/hypervisor-configs/qemu.json" >"$tmp"; then
    rm -f "$tmp"
    echo "install: could not write $etc/qemu.json from $here/hypervisor-configs/qemu.json" >&2
    exit 1
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$etc/qemu.json"
fi
# sharedFs virtio-fs needs a virtiofsd on the node (not when staging a package: that is the package's dependency).
if (( ! staging )); then
  if ensure_virtiofsd; then
    echo "install: virtiofsd $(virtiofsd_path) (sharedFs virtio-fs)"
  elif [[ "$(jq -r .sharedFs "$etc/qemu.json")" == virtio-fs ]]; then
    echo "install: $etc/qemu.json has sharedFs virtio-fs but no virtiofsd runs here" >&2
    exit 1
  fi
fi
echo "installed: $bin/containerd-shim-csharp-v1, $share ($(sed -n 's/^guest-kernel: //p' "$share/image.manifest" 2>/dev/null || echo unknown) kernel), $etc/qemu.json"
