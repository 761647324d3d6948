#!/usr/bin/env bash
# `make run`: serve a model with `aim-engine serve` on vLLM's CPU backend, on localhost:8000.
#
# The Makefile calls this with the vLLM CPU environment's bin/ first on PATH (so `vllm` and that
# environment's `python`, which has torch/transformers/tokenizers, are found). Without
# AIM_MODEL_ID it builds the tiny demo Llama once into .cache/demo-model (seconds; reused after)
# and serves it as "aim-demo". The model cache lives in .cache/model-cache unless AIM_CACHE_PATH
# says otherwise. Every other AIM_* variable passes through (AIM_PORT, AIM_HEALTH_PORT, ...).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

vllm_bin=$(command -v vllm || true)
if [[ -z "$vllm_bin" ]]; then
  echo "run.sh: no vllm on PATH; run it through \`make run\` (which builds the vLLM CPU environment)" >&2
  exit 1
fi
engine_python=$(dirname "$vllm_bin")/python

if [[ -z "${AIM_MODEL_ID:-}" ]]; then
  echo "run.sh: building the demo model (tiny Llama, random weights) in .cache/demo-model ..." >&2
  if ! build_log=$(TOKENIZERS_PARALLELISM=false "$engine_python" "$repo/scripts/make_demo_model.py" \
                   "$repo/.cache/demo-model" 2>&1 >/dev/null); then
    echo "$build_log" >&2
    exit 1
  fi
  export AIM_MODEL_ID="$repo/.cache/demo-model"
  export AIM_SERVED_MODEL_NAME="${AIM_SERVED_MODEL_NAME:-aim-demo}"
fi
export AIM_CACHE_PATH="${AIM_CACHE_PATH:-$repo/.cache/model-cache}"

port=${AIM_PORT:-8000}
health=${AIM_HEALTH_PORT:-8001}
name=${AIM_SERVED_MODEL_NAME:-$AIM_MODEL_ID}
cat >&2 <<MSG
run.sh: serving $AIM_MODEL_ID as "$name" — the engine takes 20-60 s to load on a CPU. Then:
  curl -s localhost:$health/health/ready          # 200 once the model is served
  curl -s localhost:$health/status                # phase, recipe and why, timings
  curl -s localhost:$port/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "$name", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32}'
MSG
exec "$repo/.venv/bin/aim-engine" serve
