#!/usr/bin/env bash
# Builds the guest image (cached by input hash) and runs the agent's VM tests against it: each boots the image
# with the shim's QEMU command line (TCG here, virtio-serial), mounts a 9p share with busybox rootfs and drives
# the agent over TTRPC (tests/GuestAgent.Tests/Vm).
#
# Usage: guest-agent/image/test-agent.sh [IMAGE_DIR] [-- extra dotnet test args]
#   IMAGE_DIR defaults to <repo>/artifacts/guest-image
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
IMAGE=${1:-$REPO_ROOT/artifacts/guest-image}
[[ $# -gt 0 ]] && shift
[[ ${1:-} == -- ]] && shift

for p in qemu-system-x86 busybox-static; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
		[[ $EUID -eq 0 ]] || { echo "test-agent.sh: $p is missing and not root" >&2; exit 1; }
		DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update
		DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "$p"
	fi
done

"$SCRIPT_DIR/build.sh" "$IMAGE"
CSHARP_GUEST_IMAGE=$IMAGE exec dotnet test "$REPO_ROOT/tests/GuestAgent.Tests" --filter "FullyQualifiedName~.Vm." "$@"
