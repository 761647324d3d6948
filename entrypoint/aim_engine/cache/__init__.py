"""The persistent model cache: one download for the whole fleet, zero network when warm.

`warm(repo_id, settings, revision=None, on_progress=None) -> WarmResult` is the whole API the
boot sequence needs. Importing this package is cheap: huggingface_hub and filelock load only
when a download is actually needed. See docs/cache.md.
"""

from __future__ import annotations

from aim_engine.cache.layout import Layout, is_local_model
from aim_engine.cache.types import Progress, WarmResult
from aim_engine.cache.warm import WarmOptions, warm

__all__ = ["Layout", "Progress", "WarmOptions", "WarmResult", "is_local_model", "warm"]
