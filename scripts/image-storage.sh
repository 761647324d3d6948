#!/usr/bin/env bash
# Write the buildah storage configuration the image scripts use when there is no Docker engine:
# the vfs driver (works in any container or VM, no overlay or fuse needed) with its runroot and
# graphroot under STORE_DIR, so images stay in the cache, not in /var/lib/containers.
# Usage: image-storage.sh STORE_DIR   -> prints the path of the storage.conf
set -euo pipefail
store=$(mkdir -p "$1" && cd "$1" && pwd)
conf=$store/storage.conf
cat > "$conf.tmp" <<CONF
[storage]
driver = "vfs"
runroot = "$store/run"
graphroot = "$store/graph"
CONF
mv "$conf.tmp" "$conf"
echo "$conf"
