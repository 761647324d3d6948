#!/usr/bin/env bash
# Build the cached SGLang environment used to check rendered argv against SGLang's real parser
# (sglang.srt.server_args.ServerArgs.add_cli_args). Only the parser is needed, not the runtime,
# so sglang is installed without its GPU dependencies plus what its import chain touches.
# Usage: setup-sglang-parser.sh VENV_DIR SGLANG_VERSION
set -euo pipefail
venv=$1 version=$2
python=${PYTHON:-python3}
# Built in place; the .complete stamp is written last, so a half-built environment is rebuilt.
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-conflicts)
"${pip[@]}" --no-deps "sglang==$version"
"${pip[@]}" numpy msgspec 'torch==2.13.0' psutil packaging requests pydantic orjson pybase64 \
    triton pillow starlette pyzmq tqdm IPython aiohttp
"$venv/bin/python" - <<'PY'
import argparse
from sglang.srt.server_args import ServerArgs
parser = argparse.ArgumentParser()
ServerArgs.add_cli_args(parser)
parser.parse_args(["--model-path", "m", "--tp-size", "2"])
PY
touch "$venv/.complete"
echo "sglang $version parser environment ready at $venv"
