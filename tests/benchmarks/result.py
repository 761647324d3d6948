"""One benchmark figure and the markdown table they are printed in (the README copies it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Result:
    case: str
    value: str          # the measured figure, formatted ("41 ms", "2.3×")
    target: str         # the target as written in the issue ("< 3×")
    detail: str = ""    # what was compared, counts, machine notes
    met: bool | None = None

    @staticmethod
    def table(rows: list["Result"]) -> str:
        lines = ["| case | measured | target | met | detail |", "| --- | --- | --- | --- | --- |"]
        for r in rows:
            met = {True: "yes", False: "NO", None: "—"}[r.met]
            lines.append(f"| {r.case} | {r.value} | {r.target} | {met} | {r.detail} |")
        return "\n".join(lines)
