# shellcheck shell=bash
# build_busybox_image OUT_TAR [REF]: writes an OCI image-layout tarball made from Debian's busybox-static,
# suitable for `ctr images import`. REF defaults to docker.io/library/busybox:csharp.
# Deterministic: the same busybox binary gives the same bytes (and digests). Cached: when OUT_TAR exists and
# its stamp matches the inputs, nothing is rebuilt.
# Also runnable directly: bash eng/lib/busybox-image.sh OUT_TAR [REF]

if [[ -z "${_SHIMV2_BUSYBOX_IMAGE_SH:-}" ]]; then
_SHIMV2_BUSYBOX_IMAGE_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUSYBOX_IMAGE_REF_DEFAULT="docker.io/library/busybox:csharp"

_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# _blob DIR FILE: moves FILE into DIR/blobs/sha256/<digest>; prints "<digest> <size>".
_blob() {
  local dir="$1" file="$2" d s
  d="$(_sha256 "$file")"; s="$(stat -c %s "$file")"
  mv "$file" "$dir/blobs/sha256/$d"
  printf '%s %s\n' "$d" "$s"
}

# _oci_image_tarball ROOT WORK OUT REF CONFIG CREATED_BY: packs ROOT as the one layer of an OCI image-layout
# tarball OUT named REF; CONFIG is the image config's "config" object without braces. WORK is a scratch dir.
# Deterministic: sorted tar entries, fixed mtimes and owners, so the same ROOT gives the same digests.
_oci_image_tarball() {
  local root="$1" work="$2" out="$3" ref="$4" config="$5" created_by="$6"
  local lay="$work/layout"
  mkdir -p "$lay/blobs/sha256"
  # Layer: uncompressed tar (so diff_id == blob digest).
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
      -C "$root" -cf "$work/layer.tar" . || die "tar of $root failed"
  local layer_digest layer_size
  read -r layer_digest layer_size < <(_blob "$lay" "$work/layer.tar")

  printf '%s' '{"architecture":"amd64","os":"linux","config":{'"$config"'},"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer_digest"'"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"'"$created_by"'"}],"created":"1970-01-01T00:00:00Z"}' >"$work/config.json"
  local cfg_digest cfg_size
  read -r cfg_digest cfg_size < <(_blob "$lay" "$work/config.json")

  printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$cfg_digest"'","size":'"$cfg_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}]}' >"$work/manifest.json"
  local man_digest man_size
  read -r man_digest man_size < <(_blob "$lay" "$work/manifest.json")

  printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"
  printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$man_digest"'","size":'"$man_size"',"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"'"$ref"'","org.opencontainers.image.ref.name":"'"$ref"'"}}]}' >"$lay/index.json"

  mkdir -p "$(dirname "$out")"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
      -C "$lay" -cf "$out.tmp" oci-layout index.json blobs || die "tar of OCI layout failed"
  mv -f "$out.tmp" "$out"
}

# Runs in a subshell so its EXIT trap cleans the scratch dir without leaking into the caller.
build_busybox_image() (
  set -euo pipefail
  local out="$1" ref="${2:-$BUSYBOX_IMAGE_REF_DEFAULT}"
  local bb=/bin/busybox
  [[ -x "$bb" ]] || die "busybox-static is not installed ($bb missing)"
  local self_hash stamp_want
  self_hash="$(_sha256 "${BASH_SOURCE[0]}")"
  stamp_want="$(_sha256 "$bb") $self_hash $ref"
  if [[ -f "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp_want" ]]; then
    return 0
  fi

  local work; work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  local root="$work/rootfs"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var,home}
  chmod 1777 "$root/tmp"; chmod 0700 "$root/root"
  cp "$bb" "$root/bin/busybox"; chmod 0755 "$root/bin/busybox"
  local applet
  while IFS= read -r applet; do
    applet="${applet##*/}"
    [[ -z "$applet" || "$applet" == busybox ]] && continue
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done < <("$bb" --list)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"

  _oci_image_tarball "$root" "$work" "$out" "$ref" \
    '"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"' \
    "eng/lib/busybox-image.sh (Debian busybox-static)"
  printf '%s' "$stamp_want" >"$out.stamp"
)
fi

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  [[ $# -ge 1 ]] || { echo "usage: $0 OUT_TAR [REF]" >&2; exit 2; }
  build_busybox_image "$@"
fi
