"""The comment-keeping YAML patcher of model files: which facts differ from a document (`diff`)
and a rewrite of only those scalar values in the YAML text (`apply_changes`), so comments,
key order and layout survive (`aim-engine models fetch-cards` writes models/*.yaml with it).

A fact is addressed by its key path in the document, e.g. ("attention", "heads") or
("variants", 0, "weights_bytes").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

Path_ = tuple  # a key path inside a model document


# -------------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    path: Path_
    old: Any
    new: Any
    present: bool          # the key is written in the file (else it is added)

    def describe(self) -> str:
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in self.path).replace(".[", "[")
        old = "(absent)" if not self.present else json.dumps(self.old)
        return f"{where}: {old} -> {json.dumps(self.new)}"


_ABSENT = object()


def _get(doc: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or part >= len(doc):
                return _ABSENT
            doc = doc[part]
        else:
            if not isinstance(doc, Mapping) or part not in doc:
                return _ABSENT
            doc = doc[part]
    return doc


def _same(path: Path_, old: Any, new: Any) -> bool:
    if old is _ABSENT:
        # Absent and null/zero mean the same for optional facts (no window; window on every layer).
        return new is None or (path[-1] in ("sliding_window_layers", "shared_experts") and new == 0)
    return old == new and isinstance(old, bool) == isinstance(new, bool)


def diff(doc: Mapping[str, Any], facts: Mapping[Path_, Any]) -> list[Change]:
    """Facts that differ from the document, in the document's key order where possible."""
    changes: list[Change] = []
    for path, new in facts.items():
        if path[0] == "moe" and _get(doc, ("moe",)) is _ABSENT and not facts.get(("moe", "experts")):
            continue
        old = _get(doc, path)
        if not _same(path, old, new):
            changes.append(Change(path, None if old is _ABSENT else old, new, old is not _ABSENT))
    return changes


# --------------------------------------------------------------------------- text-preserving update


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value)) if any(c in str(value) for c in ":#{}[],&*!|>'\"%@`") else str(value)


def _child(node: Any, part: Any) -> Any:
    import yaml

    if isinstance(part, int):
        return node.value[part] if isinstance(node, yaml.SequenceNode) and part < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == part:
                return value
    return None


def _last_end(node: Any) -> int:
    """Character index just after the last scalar written inside `node`."""
    import yaml

    if isinstance(node, yaml.MappingNode) and node.value:
        return _last_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value and node.flow_style is not True:
        return _last_end(node.value[-1])
    return node.end_mark.index


def apply_changes(text: str, changes: Sequence[Change]) -> str:
    """Rewrite only the changed values in `text`; keep every other byte (comments included).

    A present key has its scalar replaced in place (a trailing `# derived: ...` comment is dropped,
    since the value is now the published one). An absent key is added as a new line at the end of
    its parent mapping, indented like its siblings; an absent parent mapping is appended at the end.
    """
    import yaml

    root = yaml.compose(text)
    edits: list[tuple[int, int, str]] = []   # (start, end, replacement) on the original text
    appended: dict[str, list[str]] = {}
    for change in changes:
        node = root
        for part in change.path:
            node = _child(node, part) if node is not None else None
        if node is not None and isinstance(node, yaml.ScalarNode):
            start, end = node.start_mark.index, node.end_mark.index
            line_end = text.find("\n", end)
            line_end = len(text) if line_end < 0 else line_end
            rest = text[end:line_end]
            if "# derived" in rest:
                end = line_end
            edits.append((start, end, _scalar(change.new)))
            continue
        parent = root
        for part in change.path[:-1]:
            parent = _child(parent, part) if parent is not None else None
        key = change.path[-1]
        if isinstance(parent, yaml.MappingNode) and parent.value:
            indent = parent.value[0][0].start_mark.column
            at = text.find("\n", _last_end(parent))
            at = len(text) if at < 0 else at + 1
            edits.append((at, at, " " * indent + f"{key}: {_scalar(change.new)}\n"))
        elif len(change.path) == 2 and isinstance(change.path[0], str):
            appended.setdefault(change.path[0], []).append(f"  {key}: {_scalar(change.new)}")
        else:
            raise ValueError(f"cannot place {change.describe()} in the document")
    out = text
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out = out[:start] + new + out[end:]
    for block, lines in appended.items():
        out = out.rstrip("\n") + f"\n{block}:\n" + "\n".join(lines) + "\n"
    return out


def write_atomic(path: Path, text: str) -> None:
    """Replace a model file via a temp file and a rename, durably and keeping its permissions."""
    from aim_engine.atomic import write_text

    write_text(path, text, durable=True, keep_mode=True)
