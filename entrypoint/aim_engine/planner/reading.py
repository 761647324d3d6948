"""What one serve config asks of the GPUs: tensor/pipeline/data-parallel sizes, context, batch, memory
share and KV-cache dtype, read the one way selection, the validator's memory checks, the
generator's notes and recipe listing all share.

Each value is found by `engines.recipe_args.lookup` (canonical.yaml's spellings: canonical first,
then the engine's own flag and its aliases), AIM_ENGINE_ARGS over the recipe's args; what no arg
sets is what the engine itself assumes (`recipe_args.engine_default`: vLLM's max_num_seqs is
1024 on a device with >= 70 GiB), and the context defaults to the model's max positions, as both
engines do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from aim_engine.catalog.types import int_arg
from aim_engine.engines import recipe_args as ra

if TYPE_CHECKING:
    from aim_engine.catalog.types import Model, ServeConfig


@dataclass(frozen=True)
class ConfigReading:
    """The memory-relevant facts of one serve config."""

    tp: int
    dp: int
    context: int
    batch: int
    utilization: float
    kv_cache_dtype: str | None
    keys: Mapping[str, str | None]     # canonical key -> the arg it was read from (None: default)
    pp: int = 1                        # pipeline stages (a group's nodes, usually)

    @property
    def gpus(self) -> int:
        """Every GPU the config asks for: TP × PP × DP (over all nodes of a group)."""
        return self.tp * self.pp * self.dp


@dataclass(frozen=True)
class Unreadable:
    """A value that cannot be used: which arg, what it says and why not."""

    key: str
    written: str
    value: Any
    origin: str

    def __str__(self) -> str:
        return f"{self.origin} {self.written} {self.value!r} is not {_WANT[self.key]}"


_WANT = {ra.TENSOR_PARALLEL: "a whole number >= 1", ra.DATA_PARALLEL: "a whole number >= 1",
         ra.PIPELINE_PARALLEL: "a whole number >= 1",
         ra.CONTEXT: "a whole number >= 1", ra.BATCH: "a whole number >= 1",
         ra.UTILIZATION: "a number in (0, 1]"}


def _positive(value: Any) -> int | None:
    number = int_arg(value)
    return number if number is not None and number >= 1 else None


def _share(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and 0 < number <= 1 else None


_PARSERS = ((ra.TENSOR_PARALLEL, _positive), (ra.DATA_PARALLEL, _positive), (ra.PIPELINE_PARALLEL, _positive),
            (ra.CONTEXT, _positive), (ra.BATCH, _positive), (ra.UTILIZATION, _share))
_KEYS = (*(key for key, _parse in _PARSERS), ra.KV_CACHE_DTYPE)


def read(model: "Model", config: "ServeConfig", memory_bytes: int | None = None,
         overrides: Mapping[str, Any] | None = None) -> ConfigReading | Unreadable:
    """The config's reading (AIM_ENGINE_ARGS `overrides` over its args), or the first value that
    cannot be used. `memory_bytes` (per device) picks the engine's memory-dependent defaults."""
    engine = config.engine
    keys: dict[str, str | None] = {}
    values: dict[str, Any] = {}
    # AIM_ENGINE_ARGS applies to whichever engine is chosen: any engine's spelling counts (the
    # adapter refuses one the chosen engine lacks), so the fit check never misses it.
    forced = ra.lookup_all(overrides, _KEYS) if overrides else {}
    written_in = ra.lookup_all(config.args, _KEYS, engine)
    for key, parse in _PARSERS:
        origin, (written, raw) = "AIM_ENGINE_ARGS", forced.get(key, (None, None))
        if written is None:
            origin, (written, raw) = "recipe", written_in[key]
        keys[key] = written
        if written is None:
            values[key] = None
            continue
        values[key] = parse(raw)
        if values[key] is None:
            return Unreadable(key, written, raw, origin)
    written, kv = forced.get(ra.KV_CACHE_DTYPE, (None, None))
    if written is None:
        written, kv = written_in[ra.KV_CACHE_DTYPE]
    keys[ra.KV_CACHE_DTYPE] = written
    return ConfigReading(
        tp=values[ra.TENSOR_PARALLEL] or 1,
        dp=values[ra.DATA_PARALLEL] or 1,
        context=values[ra.CONTEXT] or model.max_position_embeddings,
        batch=values[ra.BATCH] or ra.default_batch(engine, memory_bytes),
        utilization=values[ra.UTILIZATION] or ra.default_utilization(engine),
        kv_cache_dtype=str(kv) if kv not in (None, "auto") else None,
        keys=keys,
        pp=values[ra.PIPELINE_PARALLEL] or 1,
    )
