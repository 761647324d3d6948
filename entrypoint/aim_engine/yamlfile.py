"""Reading YAML the fast way: documents compiled into the wheel, else libyaml's C loader.

One recipe for every YAML the agent reads: the data tables shipped next to the modules that use
them (`hardware/gpus.yaml`, `engines/canonical.yaml`, `engines/rocm_env.yaml`) and the catalog
(`catalog/yamlio.py`).

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


def safe_loader() -> Any:
    """PyYAML's safe loader class: `CSafeLoader` (libyaml) when available, else `SafeLoader`."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        except (yaml.YAMLError, TypeError, ValueError):
            continue
        if json.loads(encoded) == data:
            index[path.relative_to(root).as_posix()] = [digest(text), encoded]
    (root / COMPILED_NAME).write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    return len(index)
