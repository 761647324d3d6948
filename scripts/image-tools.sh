#!/usr/bin/env bash
# Install the OCI tools the CPU image test uses when the machine has no Docker engine: Debian's
# buildah (builds and runs the image, as root, chroot isolation, vfs storage) and debootstrap
# (makes the base image from Debian's packages). apt-get update runs once, only when one is missing.
set -euo pipefail
missing=()
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]} == 0)); then
  echo "image tools: $(env -u CONTAINERS_STORAGE_CONF buildah --version | cut -d' ' -f1-3), debootstrap $(debootstrap --version | cut -d' ' -f2)"
  exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "image tools: ${missing[*]} missing; install them (Debian/Ubuntu: apt-get install ${missing[*]}) as root" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
echo "image tools: installed ${missing[*]}"
