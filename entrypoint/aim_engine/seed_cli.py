"""`aim-recipe-selector`: the seed document's command line, kept working (not implemented yet)."""

from __future__ import annotations

import sys


def main() -> int:
    print("aim-recipe-selector: not implemented yet", file=sys.stderr)
    return 2
