#!/usr/bin/env bash
# Builds everything the tests and the demo need:
#   1. apt packages (eng/lib/deps.sh, clang for NativeAOT among them; apt-get update only when something is missing)
#   2. dotnet build ShimV2.sln -c Release (warnings are errors)
#   3. dotnet publish of the shim (NativeAOT) -> artifacts/bin/containerd-shim-csharp-v1
#   4. guest kernel + initrd -> artifacts/guest/{vmlinux,initrd.img} (guest-agent/image/build.sh; it caches): our own
#      kernel (eng/kernel/build.sh builds it once per machine, a long build, and caches it in
#      /var/cache/csharp-shim/kernel); GUEST_KERNEL=generic: Debian's, plus vmlinuz and its modules
#   5. artifacts/config/qemu.json = hypervisor-configs/qemu.json with absolute kernel/initrd paths
# Quiet unless something fails (VERBOSE=1 shows everything). Idempotent; fast when nothing changed.
#
# usage: eng/build.sh [--no-deps] [--no-sln] [--no-guest]
#   --no-deps   skip the apt check          --no-sln  skip step 2 (publish the shim only)
#   --no-guest  skip steps 4-5 (e.g. while the guest image is being worked on)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/deps.sh"
cd "$REPO_ROOT"

do_deps=1 do_sln=1 do_guest=1
for a in "$@"; do
  case "$a" in
    --no-deps) do_deps=0 ;;
    --no-sln) do_sln=0 ;;
    --no-guest) do_guest=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument: $a (see --help)" ;;
  esac
done

t_start=$(now_ms)
(( do_deps )) && ensure_deps
command -v dotnet >/dev/null || die "dotnet SDK not found on PATH"

if (( do_sln )); then
  run_quiet "dotnet build ShimV2.sln" \
    dotnet build ShimV2.sln -c Release -nologo -v:minimal -clp:NoSummary -warnaserror \
    || die "build failed"
fi

# Publishing (NativeAOT: compile and link, about a minute) is slow: skip it when no input of the shim changed since the last publish.
shim="$ARTIFACTS/bin/containerd-shim-csharp-v1"
shim_inputs_hash() {
  find src protos Directory.Build.props Directory.Packages.props global.json -type f \
       \( -name '*.cs' -o -name '*.csproj' -o -name '*.proto' -o -name '*.props' -o -name '*.targets' -o -name '*.json' \) \
       -not -path '*/bin/*' -not -path '*/obj/*' -print0 2>/dev/null \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
want="$(shim_inputs_hash)"
if [[ -x "$shim" && -f "$shim.inputs" && "$(cat "$shim.inputs")" == "$want" ]]; then
  :
else
  rm -f "$shim.inputs"
  run_quiet "dotnet publish src/containerd-shim-csharp-v1" \
    dotnet publish src/containerd-shim-csharp-v1 -c Release -o "$ARTIFACTS/bin" -nologo -v:minimal -clp:NoSummary -warnaserror \
    || die "publish of the shim failed"
  [[ -x "$shim" ]] || die "publish did not produce $shim"
  printf '%s' "$want" >"$shim.inputs"
fi

if (( do_guest )); then
  [[ -f guest-agent/image/build.sh ]] || die "guest-agent/image/build.sh is missing (use --no-guest to skip the guest image)"
  run_quiet "guest image (guest-agent/image/build.sh)" bash guest-agent/image/build.sh "$ARTIFACTS/guest" \
    || die "guest image build failed"
  [[ -s "$ARTIFACTS/guest/initrd.img" ]] || die "guest image build did not produce $ARTIFACTS/guest/initrd.img"

  src_cfg=hypervisor-configs/qemu.json
  [[ -f "$src_cfg" ]] || die "$src_cfg is missing"
  mkdir -p "$ARTIFACTS/config"
  out_cfg="$ARTIFACTS/config/qemu.json"
  tmp_cfg="$(mktemp "$out_cfg.XXXXXX")"
  # The kernel the config names (vmlinux: the PVH boot; vmlinuz: the generic kernel's firmware boot), from the fresh
  # guest image.
  kernel_file="$(jq -r '.kernelPath | split("/") | last' "$src_cfg")" || die "could not read $src_cfg (is it valid JSON?)"
  [[ -s "$ARTIFACTS/guest/$kernel_file" ]] || die "$src_cfg names kernel $kernel_file, which the guest image build did not produce"
  jq --arg k "$ARTIFACTS/guest/$kernel_file" --arg i "$ARTIFACTS/guest/initrd.img" \
     '.kernelPath = $k | .initrdPath = $i' "$src_cfg" >"$tmp_cfg" \
    || { rm -f "$tmp_cfg"; die "could not rewrite $src_cfg (is it valid JSON?)"; }
  if cmp -s "$tmp_cfg" "$out_cfg"; then rm -f "$tmp_cfg"; else chmod 0644 "$tmp_cfg"; mv -f "$tmp_cfg" "$out_cfg"; fi
fi

log "build ok in $(( ($(now_ms) - t_start) / 1000 )) s: $shim$( (( do_guest )) && echo ", $ARTIFACTS/guest, $ARTIFACTS/config/qemu.json")"
