#!/usr/bin/env bash
# Build the cached "dependency floors" environment: every dependency of the agent at the LOWEST
# version pyproject.toml allows (scripts/dependency-floors.py), plus the test runner. The agent
# itself is not installed here: `make test-floors` lays a thin per-checkout venv over it that
# adds the checkout's entrypoint/ to sys.path. The directory name carries the hash of the floors,
# so checkouts with different floors never rebuild each other's environment.
# Usage: setup-floors-env.sh VENV_DIR
set -euo pipefail
venv=$1
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"$python" "$here/dependency-floors.py" > "$venv/floors.txt"
# The floors as exact pins; the test runner unpinned. pip refuses a floor that cannot be installed.
"${pip[@]}" -r "$venv/floors.txt" pytest pytest-xdist hypothesis
"$venv/bin/python" -m pip check >/dev/null || { "$venv/bin/python" -m pip check; exit 1; }
echo "dependency floors environment ready at $venv: $(tr '\n' ' ' < "$venv/floors.txt")"
