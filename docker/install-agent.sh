#!/usr/bin/env bash
# The last stage's one RUN (docker/Dockerfile), as root, on the flavour's engine stage:
#   1. the agent, into the engine's Python, so `aim-engine` sees the engines it execs;
#   2. the non-root user and the cache directory;
#   3. `aim-engine engines refresh`: regenerate the agent's flag lists from the engines installed
#      here, so the agent checks argv against exactly these versions.
# Inputs (build ARGs, seen as environment variables): AIM_IMAGE_FLAVOUR, APP_UID, APP_GID;
# /wheelhouse (bind mount; cpu: the agent's dependencies without an index, when complete).
set -euo pipefail
src=/opt/aim-engine/src
flavour=${AIM_IMAGE_FLAVOUR:?AIM_IMAGE_FLAVOUR is not set}
say() { echo "install-agent[$flavour]: $*"; }
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore

# 1. The agent. The cpu wheelhouse holds wheels for the base's Python (see install-engine.sh); the
# ROCm flavours install from the public index.
pip_sources=()
if [[ "$flavour" == cpu && -f /wheelhouse/.complete ]]; then
  pip_sources=(--no-index --find-links /wheelhouse)
  say "installing the agent from the wheelhouse, no index"
fi
python3 -m pip install -q "${pip_sources[@]}" "$src"
rm -rf "$src/build"

# 2. The non-root runtime user; GPU access comes from the device nodes' groups (video, render).
getent group "$APP_GID" >/dev/null || groupadd --gid "$APP_GID" aim
getent passwd "$APP_UID" >/dev/null || useradd --uid "$APP_UID" --gid "$APP_GID" --create-home --shell /bin/bash aim
for g in video render; do
  if getent group "$g" >/dev/null; then usermod -aG "$g" "$(getent passwd "$APP_UID" | cut -d: -f1)"; fi
done
mkdir -p /workspace/model-cache
chown -R "$APP_UID:0" /workspace/model-cache
chmod -R g+rwX /workspace/model-cache

# 3. Flag lists from the engines in this image (written where the agent looks first at boot).
say "running aim-engine engines refresh"
aim-engine engines refresh
say "done: $(aim-engine --version 2>/dev/null || echo aim-engine) for $flavour"
