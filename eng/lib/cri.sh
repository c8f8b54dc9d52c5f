# shellcheck shell=bash
# A private containerd with its CRI plugin on, for the CRI end-to-end tests and manual kubelet-like checks (e.g.
# with crictl). Built on containerd.sh (same private root, state, socket, cleanup); never a system containerd.
# Source it, then:
#
#   cri_start     # containerd_start with CRI enabled (sets what containerd_start sets), then imports the busybox,
#                 # pause and setuid (eng/lib/setuid-image.sh) images into the k8s.io namespace. The CRI config:
#                 #  - runtime handler `csharp` as the README shows (io.containerd.csharp.v1, ConfigPath =
#                 #    $CRI_HANDLER_CONFIG, default $ARTIFACTS/config/qemu.json), runc kept as the default
#                 #    handler; the shim is found on containerd's PATH (CTRD_PATH_PREFIX, then artifacts/bin:
#                 #    an installed shim, e.g. eng/install.sh --prefix ROOT, runs with CTRD_PATH_PREFIX=ROOT/usr/local/bin);
#                 #  - restrict_oom_score_adj = true (root here lacks CAP_SYS_RESOURCE);
#                 #  - sandbox image $CRI_PAUSE_IMAGE (eng/lib/pause-image.sh: no registry to pull one from);
#                 #  - CNI: the bridge plugin from containernetworking-plugins (bin dir $CRI_CNI_BIN_DIR),
#                 #    a conflist in $CTRD_DIR/cni/net.d, bridge csc<dir suffix> on $CRI_SUBNET, host-local
#                 #    IPAM state in $CTRD_DIR/cni/ipam, no masquerading (nothing in iptables);
#                 #  - streaming server on 127.0.0.1, a free port.
#   containerd_stop  # as for containerd.sh; also deletes the CNI bridge
#
# CRI_SUBNET must not overlap a route of this host (the network E2E test uses 10.199.N.0/24). One CRI containerd
# at a time (the bridge subnet is fixed; E2E runs hold the heavy lock anyway).

if [[ -n "${_SHIMV2_CRI_SH:-}" ]]; then return 0; fi
_SHIMV2_CRI_SH=1
# shellcheck source=containerd.sh
source "$(dirname "${BASH_SOURCE[0]}")/containerd.sh"
# shellcheck source=pause-image.sh
source "$(dirname "${BASH_SOURCE[0]}")/pause-image.sh"
# shellcheck source=setuid-image.sh
source "$(dirname "${BASH_SOURCE[0]}")/setuid-image.sh"

CRI_PAUSE_IMAGE="${CRI_PAUSE_IMAGE:-$PAUSE_IMAGE_REF_DEFAULT}"
CRI_CNI_BIN_DIR="${CRI_CNI_BIN_DIR:-/usr/lib/cni}"
CRI_SUBNET="${CRI_SUBNET:-10.87.0.0/16}"
CRI_HANDLER_CONFIG="${CRI_HANDLER_CONFIG:-$ARTIFACTS/config/qemu.json}"

# _cri_stanza VERSION: the CRI part of the config for that containerd version (x.y.z) on stdout.
_cri_stanza() {
  local version="$1" rt images grpc
  local config_path="$CRI_HANDLER_CONFIG" conf_dir="$CTRD_DIR/cni/net.d"
  if [[ "$version" == 1.* ]]; then
    rt='plugins."io.containerd.grpc.v1.cri"'
    cat <<TOML
[$rt]
  sandbox_image = "$CRI_PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[$rt.containerd]
  default_runtime_name = "runc"
[$rt.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[$rt.cni]
  bin_dir = "$CRI_CNI_BIN_DIR"
  conf_dir = "$conf_dir"
  max_conf_num = 1
TOML
  else
    rt='plugins."io.containerd.cri.v1.runtime"' images='plugins."io.containerd.cri.v1.images"'
    grpc='plugins."io.containerd.grpc.v1.cri"'
    cat <<TOML
[$rt]
  restrict_oom_score_adj = true
[$rt.cni]
  bin_dirs = ["$CRI_CNI_BIN_DIR"]
  conf_dir = "$conf_dir"
  max_conf_num = 1
[$images.pinned_images]
  sandbox = "$CRI_PAUSE_IMAGE"
[$grpc]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
  fi
  cat <<TOML
[$rt.containerd.runtimes.csharp]
  runtime_type = "io.containerd.csharp.v1"
  pod_annotations = ["io.katacontainers.*"]
  [$rt.containerd.runtimes.csharp.options]
    ConfigPath = "$config_path"
TOML
}

# _cri_prepare: containerd_start's CTRD_PREPARE hook (CTRD_DIR exists, containerd not started yet).
_cri_prepare() {
  local bridge="csc${CTRD_DIR##*.}"
  bridge="${bridge,,}"
  mkdir -p "$CTRD_DIR/cni/net.d" "$CTRD_DIR/cni/ipam" || return 1
  printf '%s\n' "$bridge" >"$CTRD_DIR/cni-bridge"
  cat >"$CTRD_DIR/cni/net.d/10-csharp-e2e.conflist" <<JSON || return 1
{
  "cniVersion": "0.4.0",
  "name": "csharp-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$CRI_SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$CTRD_DIR/cni/ipam"
      }
    }
  ]
}
JSON
  _cri_stanza "$CTRD_VERSION" >"$CTRD_DIR/cri.toml" || return 1
  CTRD_CRI_STANZA="$CTRD_DIR/cri.toml"
}

cri_start() {
  [[ -x "$CRI_CNI_BIN_DIR/bridge" && -x "$CRI_CNI_BIN_DIR/host-local" && -x "$CRI_CNI_BIN_DIR/loopback" ]] \
    || die "CNI plugins missing in $CRI_CNI_BIN_DIR (Debian package containernetworking-plugins; eng/build.sh installs it)"
  [[ -f "$CRI_HANDLER_CONFIG" ]] || die "$CRI_HANDLER_CONFIG is missing: run eng/build.sh first"
  local ctrd_cri_stanza_saved="${CTRD_CRI_STANZA:-}"
  CTRD_PREPARE=_cri_prepare containerd_start
  CTRD_CRI_STANZA="$ctrd_cri_stanza_saved"
  local tarball="$ARTIFACTS/images/pause-oci.tar"
  build_pause_image "$tarball" "$CRI_PAUSE_IMAGE" || die "building the pause image failed"
  CTRD_NS=k8s.io run_quiet "ctr images import $tarball" ctrd images import "$tarball" || die "importing the pause image failed"
  CTRD_NS=k8s.io import_busybox
  tarball="$ARTIFACTS/images/setuid-oci.tar"
  build_setuid_image "$tarball" "$SETUID_IMAGE_REF_DEFAULT" || die "building the setuid image failed"
  CTRD_NS=k8s.io run_quiet "ctr images import $tarball" ctrd images import "$tarball" || die "importing the setuid image failed"
}
