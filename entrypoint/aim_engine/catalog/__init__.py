"""The catalog: models and recipes (YAML + JSON Schema), their loader and the validator.

`Catalog` is the boot path's view (`Catalog.load(settings)`); `aim_engine.catalog.validator`
runs every check for `aim-engine validate`. Importing this package is cheap: YAML and
jsonschema are imported only when files are read.
"""

from __future__ import annotations

from aim_engine.catalog.catalog import Catalog

__all__ = ["Catalog"]
