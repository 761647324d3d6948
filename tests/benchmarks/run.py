"""`make bench`: run every tests/benchmarks/bench_*.py and print one table.

Each module defines `run() -> list[Result]` (in a try-free way: a failing benchmark raises and
is reported as an error row). Targets are reported, not asserted: performance lives here, not
in timed tests.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))  # repo root, so `tests.support` imports

from result import Result  # noqa: E402


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    only = argv[0] if argv else ""
    rows: list[Result] = []
    for path in sorted(HERE.glob("bench_*.py")):
        if only and only not in path.stem:
            continue
        started = time.perf_counter()
        try:
            rows.extend(_load(path).run())
        except Exception as exc:  # a broken benchmark is a row, not a crash of the table
            traceback.print_exc()
            rows.append(Result(path.stem, "error", "", f"{type(exc).__name__}: {exc}", met=False))
        print(f"# {path.stem}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
    print(Result.table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
