#!/usr/bin/env bash
# Make the local base image the CPU image test builds on, in place of the public Python base:
# Debian bookworm minbase + python3 (+ venv) + ca-certificates, made by debootstrap from Debian's
# packages and committed with buildah. The host's CA bundle replaces the image's, so pip inside a
# build trusts the TLS-intercepting proxy this machine reaches registries through. libnuma1 is NOT
# included: installing it is the Dockerfile's job (a slim public base lacks it too).
#
# Usage: image-base.sh STORE_DIR      (buildah storage and the debootstrap tree live under it)
# Prints the image name on the last line. The image is keyed by this script's hash and reused
# while it exists; the time of the last real build is kept in STORE_DIR/base-build.json.
set -euo pipefail
store=$1
: "${CONTAINERS_STORAGE_CONF:?set CONTAINERS_STORAGE_CONF (see scripts/image-storage.sh)}"
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
image=localhost/aim-engine-base:bookworm-$key
buildah=(buildah --storage-driver vfs)
if "${buildah[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  echo "image base: cached $image" >&2
  echo "$image"
  exit 0
fi
# apt's own mirror (this machine's sources), so debootstrap goes where apt is known to work.
mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' 2>/dev/null \
         | grep -m1 -E '/debian/?$' || true)
mirror=${mirror:-http://deb.debian.org/debian/}
ca_bundle=$(python3 -m pip config get global.cert 2>/dev/null || true)
ca_bundle=${ca_bundle:-/etc/ssl/certs/ca-certificates.crt}
start=$SECONDS
work=$store/base-$key
rm -rf "$work"
mkdir -p "$work"
echo "image base: debootstrap bookworm from $mirror ..." >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
cp "$ca_bundle" "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
rm -rf "$work/rootfs"
ctr=$("${buildah[@]}" from scratch)
trap '"${buildah[@]}" rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"${buildah[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
"${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd /bin/bash --label "org.opencontainers.image.description=aim-engine test base (debootstrap bookworm)" "$ctr"
"${buildah[@]}" commit -q --rm "$ctr" "$image" >/dev/null
# Older bases of this kind are superseded by the new key.
"${buildah[@]}" images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/aim-engine-base:' \
  | grep -v -- "$key\$" | xargs -r "${buildah[@]}" rmi >/dev/null 2>&1 || true
printf '{"image": "%s", "seconds": %d}\n' "$image" $((SECONDS - start)) > "$store/base-build.json"
echo "image base: built $image in $((SECONDS - start)) s" >&2
echo "$image"
