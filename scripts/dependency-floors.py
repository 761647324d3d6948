#!/usr/bin/env python3
"""Print the agent's dependency floors as pip constraints (`name==floor`, one a line), read from
pyproject.toml's [project].dependencies, so the floors test environment installs exactly the
lowest versions the package allows (scripts/setup-floors-env.sh, `make test-floors`).
`--check`: exit 1 unless the running interpreter has exactly those versions (the floors test
must not pass on newer ones by accident).

Every dependency must have a `>=` floor: one without is an error (it could not be tested).
Stdlib only; runs on the Python that builds the environments.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def dependencies(text: str) -> list[str]:
    """The strings of the `dependencies = [...]` array under [project] (comments skipped)."""
    block = re.search(r"^\[project\][^\[]*?^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
    if block is None:
        raise SystemExit("dependency-floors: no [project] dependencies in pyproject.toml")
    lines = [line.split("#", 1)[0] for line in block.group(1).splitlines()]
    return re.findall(r'"([^"]+)"', "\n".join(lines))


def floors(text: str) -> list[str]:
    out = []
    for requirement in dependencies(text):
        found = FLOOR.match(requirement)
        if found is None:
            raise SystemExit(f"dependency-floors: {requirement!r} has no >= floor (every dependency needs one)")
        out.append(f"{found.group(1)}=={found.group(2)}")
    return out


def _release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check(pins: list[str]) -> list[str]:
    """The pins the running interpreter does not hold exactly (`2.0` == `2.0.0`)."""
    import importlib.metadata as metadata

    wrong = []
    for pin in pins:
        name, version = pin.split("==")
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "(missing)"
        if _release(installed) != _release(version):
            wrong.append(f"{name} {installed} (floor {version})")
    return wrong


if __name__ == "__main__":
    pins = floors(PYPROJECT.read_text(encoding="utf-8"))
    if sys.argv[1:] == ["--check"]:
        wrong = check(pins)
        print("dependency floors: " + ("NOT at the floors: " + ", ".join(wrong) if wrong else " ".join(pins)))
        sys.exit(1 if wrong else 0)
    print("\n".join(pins))
