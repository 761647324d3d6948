"""Plain-text tables for the commands' human output (`detect`, `recipes list`, `cache list`)."""

from __future__ import annotations

from typing import Sequence


def align(rows: Sequence[Sequence[str]]) -> list[str]:
    """`rows` of cells as lines: every column as wide as its widest cell, two spaces between
    columns, no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
