"""Validation problems and the report that collects them.

A `Problem` is one thing wrong with one file: where (file, line, key path), what, and a one-line
hint on how to fix it. The validator never stops at the first problem; the report holds all of
them, renders them for people (`file:line: path: message` + hint) or as JSON for machines.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

KeyPath = tuple[Any, ...]


def format_path(path: Sequence[Any]) -> str:
    """("vllm_serve", "2_gpu", "args", "--dtype") -> "vllm_serve.2_gpu.args.--dtype"; [i] for indexes."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    hint: str
    check: str
    path: KeyPath = ()
    line: int | None = None       # 1-based; None when the file could not be read at all

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def render(self) -> str:
        key = format_path(self.path)
        head = f"{self.where}: {key + ': ' if key else ''}{self.message} [{self.check}]"
        return f"{head}\n  hint: {self.hint}" if self.hint else head

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = format_path(self.path)
        return data


@dataclass
class Report:
    """Everything one validator run found."""

    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    recipes: int = 0
    models: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: (p.file, p.line or 0, format_path(p.path), p.check))

    def summary(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        verdict = "OK" if self.ok else "FAILED"
        return (f"{verdict}: {n(self.files, 'file')} checked, {n(self.recipes, 'recipe')}, "
                f"{n(self.models, 'model')}, {n(len(self.problems), 'problem')}")

    def render_text(self, per_group: int = 20) -> str:
        """Problems for people: at most `per_group` of one check in one file, then a count (a
        recipe with 10,000 broken configs is a screenful, not 20,000 lines; JSON lists all)."""
        lines: list[str] = []
        shown_in: dict[tuple[str, str], int] = {}
        for p in self.sorted_problems():
            group = (p.file, p.check)
            shown_in[group] = shown_in.get(group, 0) + 1
            if shown_in[group] <= per_group:
                lines.append(p.render())
        for (file, check), count in shown_in.items():
            if count > per_group:
                lines.append(f"{file}: ... and {count - per_group} more [{check}] problems (--format json lists all)")
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": {"files": self.files, "recipes": self.recipes, "models": self.models,
                        "problems": len(self.problems)},
            "problems": [p.to_dict() for p in self.sorted_problems()],
        }


def _inside_cwd(path: Path) -> bool:
    here = os.getcwd()
    return os.path.abspath(path).startswith(here.rstrip(os.sep) + os.sep)


def display_path(path: Path) -> str:
    """A path as the user would recognise it: relative to the working directory when inside it."""
    try:
        # abspath, not resolve: a symbolic link is shown as the name the user gave it (a link
        # to /dev/zero is reported as the link, and a link loop cannot fail the display).
        return os.path.relpath(os.path.abspath(path)) if _inside_cwd(path) else str(path)
    except (ValueError, OSError):
        return str(path)
