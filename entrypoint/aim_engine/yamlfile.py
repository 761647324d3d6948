"""Reading YAML the fast way: libyaml's C loader when PyYAML has it, the pure-Python one else.

One recipe for every YAML the agent reads: the data tables shipped next to the modules that use
them (`hardware/gpus.yaml`, `engines/canonical.yaml`, `engines/rocm_env.yaml`) and the catalog
(`catalog/yamlio.py`). PyYAML is imported on the first read, not with this module, so commands
that read no YAML do not pay for it; the C loader parses these files several times faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def safe_loader() -> Any:
    """PyYAML's safe loader class: `CSafeLoader` (libyaml) when available, else `SafeLoader`."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(path: Path) -> Any:
    """The one YAML document in `path` (UTF-8), parsed with the safe loader."""
    import yaml

    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=safe_loader())
