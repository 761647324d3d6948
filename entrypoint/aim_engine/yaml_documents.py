"""Every YAML document the agent reads, the fast and safe way: compiled into the wheel, else
libyaml's C loader behind bounds (aliases, nesting, size). Not to be confused with
`catalog/yaml_lines.py`, which maps a catalog file's keys to lines for its problems.

One recipe for every YAML the agent reads: the data tables shipped next to the modules that use
them (`hardware/gpus.yaml`, `engines/canonical.yaml`, `engines/rocm_env.yaml`) and the catalog
(`catalog/yaml_lines.py`).

Parsing is most of what a warm boot does besides importing modules: PyYAML's import plus ~30
shipped files cost ~35 ms of CPU, against a 150 ms budget for the whole boot. So the wheel build
(setup.py) parses every shipped YAML file once and writes `_compiled_yaml.json`: for each file
(by path inside the package) the SHA-256 of its text and the document as JSON. `compiled()`
answers from there only when the file's text still has that digest, so an edited file (or an
editable install, which has no compiled file) is parsed from its YAML as before; a document
JSON cannot hold exactly (non-string keys, dates) is never compiled.

PyYAML is imported on the first real parse, not with this module, so commands that read no YAML
(or only compiled YAML) do not pay for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))      # .../aim_engine
COMPILED_NAME = "_compiled_yaml.json"

MISSING: Any = object()          # `compiled()`: no compiled document for this file and text
_index: dict[str, list[str]] | None = None


def digest(text: str) -> str:
    """The key a compiled document is checked against (shared with the build hook)."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _compiled_index() -> dict[str, list[str]]:
    global _index
    if _index is None:
        import json

        try:
            with open(os.path.join(PACKAGE_DIR, COMPILED_NAME), "rb") as fh:
                loaded = json.load(fh)
            _index = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):     # not a wheel install, or a damaged file: parse the YAML
            _index = {}
    return _index


def compiled(path: Path | str, text: str) -> Any:
    """The document the build compiled for `path`, if `text` is the text it compiled; else `MISSING`.

    A fresh object on every call, so callers may change what they get."""
    index = _compiled_index()
    if not index:
        return MISSING
    entry = index.get(os.path.relpath(os.path.abspath(path), PACKAGE_DIR))
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == digest(text)):
        return MISSING
    import json

    return json.loads(entry[1])


# Limits of one YAML document (docs/inputs.md). A catalog file is a few KB; the largest
# generated recipe is ~10 KB. An alias bomb (each anchor repeating the previous one nine times:
# 1 KB of text, 10^9 nodes once expanded) is refused before anything is expanded.
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000          # nodes of the document with every alias expanded
MAX_DEPTH = 100              # nesting of mappings and lists


class YamlLimitError(ValueError):
    """A document the agent will not expand: too many nodes once aliases are expanded, an alias
    that contains itself, nesting too deep, or a key written twice in one mapping. `line` is
    1-based, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _check_graph(yaml: Any, loader: Any, root: Any) -> None:
    """Walk the composed node graph once (each node once, however many aliases point at it):
    duplicate keys, nesting depth, and the size the document would have with every alias
    expanded — computed, not built."""
    merge_tag = "tag:yaml.org,2002:merge"
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(yaml, node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_NODES:
                raise YamlLimitError(f"the document expands to more than {MAX_NODES:,} nodes (aliases repeat "
                                     f"anchored parts); refusing to expand it", node.start_mark.line + 1)
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlLimitError("an alias refers to a node that contains it (a recursive document)",
                                 node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"nesting deeper than {MAX_DEPTH} levels", node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, depth, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == merge_tag or not isinstance(key_node, yaml.ScalarNode):
                    continue
                try:
                    name = loader.construct_object(key_node)
                    hash(name)
                except Exception:   # noqa: BLE001 - an unreadable key is the constructor's error to report
                    continue
                line = key_node.start_mark.line + 1
                if name in seen:
                    raise YamlLimitError(f"duplicate key {str(name)[:80]!r} (first written at line {seen[name]}); "
                                         "YAML keeps only the last one", line)
                seen[name] = line
        for child in _children(yaml, node):
            if id(child) not in size:
                stack.append((child, depth + 1, False))


def _children(yaml: Any, node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_strict: Any = None


def safe_loader() -> Any:
    """The loader every YAML file is parsed with: PyYAML's safe loader (`CSafeLoader`, libyaml,
    when available), made strict — the composed document is checked (`_check_graph`) before
    any Python object is built from it. A violation raises `YamlLimitError`."""
    global _strict
    if _strict is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class StrictSafeLoader(base):  # type: ignore[misc, valid-type]
            def construct_document(self, node: Any) -> Any:
                _check_graph(yaml, self, node)
                return super().construct_document(node)

        _strict = StrictSafeLoader
    return _strict


def load(path: Path) -> Any:
    """The one YAML document in `path` (UTF-8): compiled at build time, else parsed now."""
    text = Path(path).read_text(encoding="utf-8")
    data = compiled(path, text)
    if data is not MISSING:
        return data
    import yaml

    return yaml.load(text, Loader=safe_loader())


def compile_tree(package: Path | str) -> int:
    """Write `package/_compiled_yaml.json` for every YAML file under `package` (the build hook in
    setup.py runs this on the built package); returns how many files were compiled.

    A document JSON cannot hold exactly (non-string keys, dates, NaN) is left out: the agent
    parses that file at run time, as it does any file whose text changed since."""
    import json

    import yaml

    root = Path(package)
    index: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()):
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.load(text, Loader=safe_loader())
            encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (yaml.YAMLError, TypeError, ValueError, RecursionError):
            continue
        if json.loads(encoded) == data:
            index[path.relative_to(root).as_posix()] = [digest(text), encoded]
    (root / COMPILED_NAME).write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    return len(index)
