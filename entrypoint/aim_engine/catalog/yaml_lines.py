"""Catalog YAML with line numbers: fast when files are fine, precise (the line of every key)
when they are not. The parsing itself is `aim_engine.yaml_documents`'.

Documents are parsed with libyaml's C loader when available (no line information, which keeps
1,000 recipes well under a second). Only for a file that has problems do we compose it a second
time into nodes, which carry marks, and map every key path to the line where it is written.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aim_engine.catalog.problems import KeyPath
from aim_engine.yaml_documents import MAX_FILE_BYTES, YamlLimitError, safe_loader


def _yaml() -> Any:
    import yaml  # lazily: `aim-engine --help` must not pay for it

    return yaml


class YamlSyntaxError(Exception):
    """A document that is not valid YAML (or not readable text); carries the 1-based line.
    `check` is "yaml" for the document's content and "file" for the file itself (a FIFO, a
    symbolic-link loop, no permission, too large)."""

    def __init__(self, message: str, line: int | None, check: str = "yaml") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.check = check


def _jsonable_keys(value: Any) -> Any:
    """Mapping keys become strings (YAML allows `1:` or `true:` as keys; JSON Schema does not)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _jsonable_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable_keys(v) for v in value]
    return value


def parse(text: str) -> Any:
    """Parse one YAML document (fast path). Raises `YamlSyntaxError` with the line on failure."""
    yaml = _yaml()
    try:
        return _jsonable_keys(yaml.load(text, Loader=safe_loader()))
    except YamlLimitError as exc:
        raise YamlSyntaxError(exc.message, exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise YamlSyntaxError(problem or "invalid YAML", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc).splitlines()[0] if str(exc) else "invalid YAML", None) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. a timestamp out of range
        raise YamlSyntaxError(f"unreadable value: {exc}", None) from None


_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a catalog file (None: it is a regular file of a sane size).
    Checked before opening it: reading a FIFO blocks forever, /dev/zero never ends."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "is a broken symbolic link" if os.path.islink(path) else "does not exist"
        if exc.errno == errno.ENAMETOOLONG:
            return "has a name too long for the file system"
        return f"cannot be read: {exc.strerror or exc}"
    for test, what in _FILE_TYPES:
        if test(info.st_mode):
            return f"is {what}, not a regular file"
    if info.st_size > MAX_FILE_BYTES:
        return f"is {info.st_size:,} bytes; a catalog file may be at most {MAX_FILE_BYTES:,} bytes"
    return None


def read_text(path: Path) -> str:
    """The file's text; `YamlSyntaxError` (check "file") when it cannot be read as UTF-8 text."""
    problem = file_problem(path)
    if problem:
        raise YamlSyntaxError(problem, None, check="file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise YamlSyntaxError(f"cannot be read: {exc.strerror or exc}", None, check="file") from None
    if len(data) > MAX_FILE_BYTES:
        raise YamlSyntaxError(f"is larger than {MAX_FILE_BYTES:,} bytes (the limit of a catalog file)", None,
                              check="file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(f"is not UTF-8 text ({exc.reason} at byte {exc.start})", None, check="file") from None


@dataclass
class LineMap:
    """Key path -> 1-based line, for one document. Unknown paths fall back to their parent."""

    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def line_map(text: str) -> LineMap:
    """Compose `text` into nodes and record the line of every key and list item."""
    yaml = _yaml()
    result = LineMap()
    try:
        root = yaml.compose(text, Loader=safe_loader())
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return result
    if root is None:
        return result
    result.lines[()] = root.start_mark.line + 1
    stack: list[tuple[Any, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
                child = (*path, key)
                result.lines.setdefault(child, key_node.start_mark.line + 1)
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                result.lines.setdefault(child, item.start_mark.line + 1)
                stack.append((item, child))
    return result
