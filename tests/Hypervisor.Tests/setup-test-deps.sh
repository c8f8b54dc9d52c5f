#!/bin/sh
# Installs what the real-QEMU tests of ShimV2.Hypervisor.Tests need (they skip, naming this script, without it).
set -eu
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    qemu-system-x86 linux-image-amd64 busybox-static cpio
