"""Where a setting lives in a recipe's args (or AIM_ENGINE_ARGS), and what the engine assumes
when no arg sets it: derived from `canonical.yaml` and the engines' flag lists only.

A recipe or an override may write a setting in its canonical spelling (`--max-batch-size`) or
in any spelling of the engine's own flag (`--max-num-seqs`, vLLM's `-tp`, SGLang's
`--tensor-parallel-size` alias of `--tp-size`), and with underscores (`--max_num_seqs`). Selection,
the validator's checks, the generator, synthesis and the AIM_ENGINE_ARGS value checks all ask
this module, so they read the same value the adapter will render: one function, `lookup`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

ENGINES: tuple[str, ...] = ("vllm", "sglang")

# The canonical settings the planner reads (canonical.yaml keys).
TENSOR_PARALLEL = "--tensor-parallel-size"
DATA_PARALLEL = "--data-parallel-size"
PIPELINE_PARALLEL = "--pipeline-parallel-size"
CONTEXT = "--max-context-len"
BATCH = "--max-batch-size"
UTILIZATION = "--gpu-memory-utilization"
KV_CACHE_DTYPE = "--kv-cache-dtype"


@lru_cache(maxsize=None)
def spellings(key: str, engine: str | None = None) -> tuple[str, ...]:
    """Every arg name that sets canonical `key` for `engine` (None: for either engine): the
    canonical name first, then each spelling of the engine's flag in its parser (aliases too)."""
    from aim_engine.engines import flags
    from aim_engine.engines.base import table

    per_engine = table().canonical.get(key)
    if per_engine is None:
        raise KeyError(f"{key} is not a canonical arg (engines/canonical.yaml)")
    out: list[str] = [key]
    for name in (engine,) if engine else ENGINES:
        flag = (per_engine.get(name) or {}).get("flag")
        if not flag:
            continue
        info = flags.flag_info(name, flag)
        for option in (info.option_strings if info else (flag,)):
            if option not in out:
                out.append(option)
    return tuple(out)


def lookup(args: Mapping[str, Any], key: str, engine: str | None = None) -> tuple[str | None, Any]:
    """(the arg name as written, its value) for canonical `key` in `args`, or (None, None).

    Names are compared as the engines' parsers read them (`--max_num_seqs` is `--max-num-seqs`);
    a null value (AIM_ENGINE_ARGS removing a flag) counts as not set. The canonical spelling wins
    over native ones, as the adapter's merge does.
    """
    from aim_engine.engines.base import normalize_key

    # The flag lists (for aliases such as vLLM's -tp) are read only when an arg is spelled
    # outside canonical.yaml's own vocabulary: a boot planning catalog recipes, which use
    # canonical names, never loads the other engine's list.
    keys = [normalize_key(k) if isinstance(k, str) else k for k in args]
    plain = _vocabulary()
    names = spellings(key, engine) if any(k not in plain for k in keys) else _plain_spellings(key, engine)
    found: dict[str, tuple[str, Any]] = {}
    for written, value in args.items():
        name = normalize_key(written) if isinstance(written, str) else written
        if name in names and value is not None and name not in found:
            found[name] = (written, value)
    for name in names:
        if name in found:
            return found[name]
    return None, None


def lookup_all(args: Mapping[str, Any], keys: tuple[str, ...], engine: str | None = None
               ) -> dict[str, tuple[str | None, Any]]:
    """`lookup` of several canonical keys at once: the same answers, with the arg names
    normalized once instead of once per key (selection reads six settings of every config)."""
    from aim_engine.engines.base import normalize_key

    names_of = [normalize_key(k) if isinstance(k, str) else k for k in args]
    plain = _vocabulary()
    spelled = spellings if any(k not in plain for k in names_of) else _plain_spellings
    present: dict[str, tuple[str, Any]] = {}
    for name, (written, value) in zip(names_of, args.items()):
        if value is not None and name not in present:
            present[name] = (written, value)
    out: dict[str, tuple[str | None, Any]] = {}
    for key in keys:
        out[key] = next((present[name] for name in spelled(key, engine) if name in present), (None, None))
    return out


@lru_cache(maxsize=None)
def _plain_spellings(key: str, engine: str | None) -> tuple[str, ...]:
    """`spellings` from canonical.yaml alone: the canonical name and each engine's flag."""
    from aim_engine.engines.base import table

    out = [key]
    for name in (engine,) if engine else ENGINES:
        flag = ((table().canonical.get(key) or {}).get(name) or {}).get("flag")
        if flag and flag not in out:
            out.append(flag)
    return tuple(out)


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    """Every name canonical.yaml itself spells: canonical keys and each engine's flag for them."""
    from aim_engine.engines.base import table

    names = set(table().canonical)
    for per_engine in table().canonical.values():
        names.update(spec["flag"] for spec in per_engine.values() if spec and spec.get("flag"))
    return frozenset(names)


def engine_default(key: str, engine: str, memory_bytes: int | None = None) -> Any:
    """What `engine` uses for canonical `key` when nothing sets it (canonical.yaml `defaults`),
    or None when the table has no default for it. `memory_bytes`: per device, for defaults that
    depend on it (vLLM's max_num_seqs)."""
    from aim_engine.engines.base import table

    spec = (table().defaults.get(key) or {}).get(engine)
    if not spec:
        return None
    if "by_memory_gib" in spec:
        gib = (memory_bytes or 0) / (1 << 30)
        value = None
        for threshold, candidate in spec["by_memory_gib"]:
            if gib >= threshold:
                value = candidate
        return value
    return spec.get("value")


def default_batch(engine: str, memory_bytes: int | None) -> int:
    return int(engine_default(BATCH, engine, memory_bytes))


def default_utilization(engine: str) -> float:
    return float(engine_default(UTILIZATION, engine))
