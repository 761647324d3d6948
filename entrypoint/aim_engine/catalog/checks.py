"""The validator's checks: each a small function over one recipe, one model, or the whole set.

A check yields `Problem`s (built with `doc.problem(...)`, which fills in file and line). The
built-in checks are listed in `CHECKS`; other areas add theirs without touching this file by
defining a module-level `CHECKS` tuple of `Check` in one of `EXTENSION_MODULES` (the planner's
memory-fit and tensor-parallel-legality checks live in `aim_engine.planner.fit_checks`).

Checks run on documents that passed the JSON Schema (so `doc.obj` is a typed `Recipe`/`Model`);
structure is the schema's job, these check meaning.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from aim_engine.catalog.loader import SERVE_SECTIONS
from aim_engine.catalog.problems import Problem
from aim_engine.catalog.types import Model, Recipe, ServeConfig, int_arg

RECIPE_SCOPE, MODEL_SCOPE, CATALOG_SCOPE = "recipe", "model", "catalog"
EXTENSION_MODULES: tuple[str, ...] = ("aim_engine.planner.fit_checks",)


@dataclass(frozen=True)
class Check:
    """One named check. `func` signature by scope:
    recipe:  (doc, recipe, ctx) -> Iterable[Problem]
    model:   (doc, model, ctx)  -> Iterable[Problem]
    catalog: (ctx)              -> Iterable[Problem]"""

    name: str
    scope: str
    func: Callable[..., Iterable[Problem]]
    summary: str


@dataclass
class Context:
    """What checks may consult: every document under validation and the models recipes may use.

    `models` holds the typed models recipes resolve against (the given model files plus the
    shipped catalog as reference); `recipe_docs`/`model_docs` are only the files being validated.
    """

    recipe_docs: list[Any] = field(default_factory=list)
    model_docs: list[Any] = field(default_factory=list)
    models: list[Model] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {m.model_id: m for m in self.models}
        self._by_name = {name.lower(): m for m in reversed(self.models) for name in m.names()}

    def model(self, model_id: str) -> Model | None:
        """The model with exactly this canonical id."""
        return self._by_id.get(model_id)

    def model_by_any_name(self, name: str) -> Model | None:
        return self._by_name.get(name.lower())


# --------------------------------------------------------------------------------- data
CPU_PRECISIONS = ("fp16", "bf16", "int8", "int4")
# --dtype values that mean each half precision (both engines' spellings + canonical aliases).
HALF_DTYPES = {"fp16": ("float16", "half", "fp16"), "bf16": ("bfloat16", "bf16")}
WIDE_DTYPES = ("float", "float32")
FP8_DTYPE = "float8"
QUANTIZED_PRECISIONS = ("fp8", "int8", "int4")
TRUE_FALSE = ("true", "false")
SECTION = {engine: section for section, engine in SERVE_SECTIONS.items()}   # engine -> its serve section
ENGINE_NAME = {"vllm": "vLLM", "sglang": "SGLang"}


def canonical_args() -> Mapping[str, Any]:
    """engines/canonical.yaml's canonical arg -> per-engine flag, as the engine adapters load it
    (one loader, one table: the validator judges what the adapters will render)."""
    from aim_engine.engines.base import table

    return table().canonical


def _choices_hint(arg: str, engine: str, choices: Iterable[str]) -> str:
    """'use one of: ...', plus the canonical spellings the adapter translates into a choice."""
    choices = tuple(choices)
    values = (canonical_args().get(arg, {}).get(engine) or {}).get("values") or {}
    aliases = sorted(k for k, v in values.items() if v in choices and k not in choices)
    more = f" (or canonical {', '.join(aliases)}, which {ENGINE_NAME[engine]} gets as " \
           f"{', '.join(sorted({values[a] for a in aliases}))})" if aliases else ""
    return f"use one of: {', '.join(choices)}{more}"


def _config_path(config: ServeConfig) -> tuple[str, ...]:
    return (SECTION[config.engine], config.name)


def _arg_path(config: ServeConfig, arg: str) -> tuple[str, ...]:
    return (*_config_path(config), "args", arg)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=2, cutoff=0.75)
    return f"did you mean {' or '.join(close)}?" if close else ""


# -------------------------------------------------------------------------- recipe checks
def check_recipe_id(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    """recipe_id == file stem == {model slug}-{hardware}-{precision}."""
    rid = recipe.recipe_id
    stem = doc.path.stem
    if rid != stem:
        yield doc.problem("recipe-id", ("recipe_id",), f"recipe_id {rid!r} differs from the file name {doc.path.name!r}",
                          f"rename the file to {rid}.yaml or set recipe_id: {stem}")
    model = ctx.model(recipe.model_id)
    hardware, precision = recipe.hardware.lower(), recipe.precision
    parts = rid.rsplit("-", 2)
    if len(parts) != 3:
        expected = f"{model.slug if model else '<model>'}-{hardware}-{precision}"
        yield doc.problem("recipe-id", ("recipe_id",), f"recipe_id {rid!r} is not {{model}}-{{hardware}}-{{precision}}",
                          f"name it {expected}")
        return
    name_model, name_hw, name_precision = parts
    if name_hw != hardware:
        yield doc.problem("recipe-id", ("recipe_id",),
                          f"recipe_id says hardware {name_hw!r} but hardware is {recipe.hardware!r}",
                          f"make them agree: recipe_id ...-{hardware}-{precision} or hardware: {name_hw.upper()}")
    if name_precision != precision:
        yield doc.problem("recipe-id", ("recipe_id",),
                          f"recipe_id says precision {name_precision!r} but precision is {precision!r}",
                          f"make them agree: recipe_id ...-{name_hw}-{precision} or precision: {name_precision}")
    if model is not None and name_model != model.slug:
        yield doc.problem("recipe-id", ("recipe_id",),
                          f"recipe_id starts with {name_model!r} but the model's slug is {model.slug!r}",
                          f"name it {model.slug}-{hardware}-{precision}")


def check_model_exists(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    if ctx.model(recipe.model_id) is not None:
        return
    other = ctx.model_by_any_name(recipe.model_id)
    if other is not None:
        hint = f"use the canonical id: model_id: {other.model_id}"
    else:
        guess = _did_you_mean(recipe.model_id, [m.model_id for m in ctx.models])
        hint = guess or "add a model file to models/ (see models/schema.json) or fix the id"
    yield doc.problem("model-exists", ("model_id",), f"model_id {recipe.model_id!r} is not in the model catalog", hint)


def check_checkpoint(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    """huggingface_id is the model or one of its declared variants, of the recipe's precision;
    a `--model` arg, if written, loads that same checkpoint."""
    model = ctx.model(recipe.model_id)
    if model is not None:
        allowed = [model.huggingface_id, *(v.huggingface_id for v in model.variants)]
        if recipe.huggingface_id not in allowed:
            yield doc.problem("checkpoint", ("huggingface_id",),
                              f"huggingface_id {recipe.huggingface_id!r} is neither {model.model_id} nor one of its variants",
                              f"use one of: {', '.join(allowed)} (or declare the variant in the model file)")
        else:
            variant = model.checkpoint(recipe.huggingface_id)
            if variant is not None and recipe.precision != "mixed" and variant.precision != recipe.precision:
                yield doc.problem("checkpoint", ("huggingface_id",),
                                  f"{recipe.huggingface_id} is a {variant.precision} checkpoint but precision is {recipe.precision}",
                                  f"set precision: {variant.precision} or load a {recipe.precision} checkpoint")
    for config in recipe.configs:
        value = config.args.get("--model")
        if value is not None and str(value) != recipe.huggingface_id:
            yield doc.problem("checkpoint", _arg_path(config, "--model"),
                              f"--model {value!r} differs from huggingface_id {recipe.huggingface_id!r}",
                              "drop --model (the agent fills it in) or make it equal huggingface_id")


def check_enabled(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    if doc.obj is None and _raw_enabled(doc.data):
        return  # salvaged: the enabled config is in a part the schema rejected (already reported)
    if not recipe.enabled_configs():
        section = "vllm_serve" if "vllm_serve" in doc.data else "sglang_serve"
        yield doc.problem("enabled-config", (section,), "no serving config is enabled",
                          "set `enabled: true` on at least one N_gpu config")


def _raw_enabled(data: Any) -> bool:
    sections = (data.get(s) for s in SECTION.values()) if isinstance(data, dict) else ()
    return any(isinstance(c, dict) and c.get("enabled") is True
               for sec in sections if isinstance(sec, dict) for c in sec.values())


def check_tensor_parallel(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    """An N_gpu config uses N GPUs: tensor-parallel size (times pipeline- and data-parallel
    sizes, if set) = N. An MxN_gpu config (M nodes of N GPUs) covers all M × N GPUs the same way."""
    from aim_engine.engines import recipe_args as ra

    for config in recipe.configs:
        n, name = config.total_gpus, config.name
        flags_of = {key: ra.lookup(config.args, key, config.engine)[0]
                    for key in (ra.TENSOR_PARALLEL, ra.PIPELINE_PARALLEL, ra.DATA_PARALLEL)}
        sizes = {key: (int_arg(config.args[flag]) if flag else 1) for key, flag in flags_of.items()}
        tp_flag = flags_of[ra.TENSOR_PARALLEL]
        if tp_flag is None and n != 1:
            yield doc.problem("tensor-parallel", (*_config_path(config), "args"),
                              f"{name} config has no --tensor-parallel-size",
                              f'add --tensor-parallel-size: "{n if config.nodes == 1 else config.gpus}" '
                              "(only 1_gpu may omit it)")
            continue
        bad = False
        for key, flag in flags_of.items():
            value = sizes[key]
            if flag and (value is None or value < 1):
                bad = True
                yield doc.problem("tensor-parallel", _arg_path(config, flag),
                                  f"{flag} {config.args[flag]!r} is not a positive integer", f'write a count, e.g. "{n}"')
        if bad:
            continue
        tp, pp, dp = sizes[ra.TENSOR_PARALLEL], sizes[ra.PIPELINE_PARALLEL], sizes[ra.DATA_PARALLEL]
        if tp * pp * dp == n:
            continue
        where = _arg_path(config, tp_flag) if tp_flag else (*_config_path(config), "args")
        detail = " × ".join(f"{flags_of[k]} {sizes[k]}" for k in flags_of if flags_of[k]) or f"--tensor-parallel-size {tp}"
        used = tp * pp * dp
        if config.nodes > 1:
            hint = (f"an {name} config covers {config.nodes} nodes × {config.gpus} GPUs = {n}: e.g. "
                    f"--tensor-parallel-size {config.gpus} × --pipeline-parallel-size {config.nodes} (vLLM), "
                    f"or --tensor-parallel-size {n} (SGLang)")
        else:
            hint = (f'set {tp_flag or "--tensor-parallel-size"}: "{n // (pp * dp) if n % (pp * dp) == 0 else n}" '
                    f"or rename the config to {used}_gpu")
        yield doc.problem("tensor-parallel", where, f"{name} config but {detail} uses {used} GPUs", hint)


def check_engine_args(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    """Every arg is an AIM canonical arg or a real flag of that engine, with a usable value."""
    from aim_engine.engines import flags
    from aim_engine.engines.base import engine_value

    canonical = canonical_args()
    for config in recipe.configs:
        engine = config.engine
        other = "sglang" if engine == "vllm" else "vllm"
        for arg, value in config.args.items():
            where = _arg_path(config, arg)
            if arg in canonical:
                native = canonical[arg].get(engine, {})
                native_flag = native.get("flag")
                if native_flag and native_flag != arg and native_flag in config.args:
                    yield doc.problem("engine-args", where, f"{arg} and {native_flag} both set (they are the same {ENGINE_NAME[engine]} flag)",
                                      "keep one of them")
                if native.get("switch") and not _switch_value_ok(value):
                    yield doc.problem("engine-args", where, f"{arg} is a switch; {value!r} is not true/false",
                                      f'write {arg}: "true" (or remove it)')
                # Values reach the engine's flag as the adapter spells them (canonical.yaml
                # `values:`, through the adapters' own function); check that against its choices
                # (--dtype has canonical aliases and is the dtype check's business).
                info = flags.flag_info(engine, native_flag) if native_flag and arg != "--dtype" else None
                if info and info.choices and value is not None and not isinstance(value, bool) \
                        and str(engine_value(arg, engine, str(value))) not in info.choices:
                    yield doc.problem("engine-args", where,
                                      f"{arg} {value!r} is not accepted by {ENGINE_NAME[engine]} ({native_flag})",
                                      _choices_hint(arg, engine, info.choices))
                continue
            info = flags.flag_info(engine, arg)
            if info is None:
                guess = _did_you_mean(arg, [*flags.known_flags(engine), *canonical])
                if guess:
                    hint = guess
                elif flags.flag_info(other, arg) is not None:
                    hint = f"{arg} is a {ENGINE_NAME[other]} flag; move it to {SECTION[other]} or use the canonical name"
                else:
                    hint = (f"use a canonical arg ({', '.join(canonical)}) or a {ENGINE_NAME[engine]} "
                            f"{flags.engine_version(engine)} flag")
                yield doc.problem("engine-args", where, f"{arg} is not a {ENGINE_NAME[engine]} flag", hint)
                continue
            if not info.takes_value:
                if not _switch_value_ok(value):
                    yield doc.problem("engine-args", where, f"{arg} is a switch; {value!r} is not true/false",
                                      f'write {arg}: "true" (or remove it)')
            elif isinstance(value, bool):
                yield doc.problem("engine-args", where, f"{arg} takes a value, not {value!r}",
                                  f"give it a value{' (one of: ' + ', '.join(info.choices) + ')' if info.choices else ''}")
            elif info.choices and value is not None and str(value) not in info.choices:
                yield doc.problem("engine-args", where, f"{arg} {value!r} is not accepted by {ENGINE_NAME[engine]}",
                                  f"use one of: {', '.join(info.choices)}")


# ----------------------------------------------------------------- value rules (one table)
# The values the planner reads and the engines take as counts, sizes and fractions: the same
# rules for a recipe's args (check `arg-values`) and for AIM_ENGINE_ARGS (the planner calls
# `value_problems` before it plans). Keyed by canonical arg; each engine's spelling of it (from
# canonical.yaml and the flag lists, e.g. --tp-size, -tp, --max-model-len) gets the same rule.
# 64: the most GPUs one node shows (settings.MAX_GPUS). 16M tokens: far beyond any model's context.
VALUE_RULES: dict[str, tuple[str, float, float]] = {
    "--tensor-parallel-size": ("count", 1, 64),
    "--data-parallel-size": ("count", 1, 64),
    "--pipeline-parallel-size": ("count", 1, 64),
    "--max-context-len": ("count", 1, 16_777_216),
    "--max-batch-size": ("count", 1, 1_048_576),
    "--gpu-memory-utilization": ("fraction", 0, 1),
}


def _rule_of(arg: str, engine: str) -> tuple[str, tuple[str, float, float]] | None:
    """(canonical name, rule) for `arg` in `engine`'s args, any spelling (engines.recipe_args:
    the one answer to "which arg sets this"); None: no rule."""
    from aim_engine.engines import recipe_args

    for key, rule in VALUE_RULES.items():
        if arg in recipe_args.spellings(key, engine):
            return key, rule
    return None


def _scalar_problem(value: Any) -> str | None:
    """What no arg value may be, whatever its flag: text with control characters (a NUL byte
    cannot even reach exec), a number that is not finite (JSON's 1e999 is infinity)."""
    import math

    if isinstance(value, str):
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
            return "contains control characters (a NUL byte or a line break cannot be a command-line value)"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if isinstance(value, (list, tuple)):
        return next((p for p in map(_scalar_problem, value) if p), None)
    if isinstance(value, Mapping):
        return next((p for p in (*map(_scalar_problem, value.keys()), *map(_scalar_problem, value.values())) if p),
                    None)
    return None


def value_problems(arg: str, value: Any, engine: str) -> list[tuple[str, str]]:
    """(message, hint) for every way `value` of `arg` breaks the value rules in `engine`."""
    from aim_engine.errors import shown

    if value is None:
        return []
    problems = []
    quoted = shown(value) if isinstance(value, str) else repr(value)
    generic = _scalar_problem(value)
    if generic:
        problems.append((f"{arg} {quoted} {generic}", "write a plain value"))
    found = _rule_of(arg, engine)
    if found is None or generic:
        return problems
    key, (kind, low, high) = found
    if kind == "count":
        number = int_arg(value)
        if number is None or not low <= number <= high:
            example = 8192 if key == "--max-context-len" else int(low)
            problems.append((f"{arg} {quoted} is not a whole number from {int(low)} to {int(high)}",
                             f'write a count, e.g. "{example}"'))
    else:
        try:
            number = float(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not low < number <= high:
            problems.append((f"{arg} {quoted} is not a fraction above {low:g} and at most {high:g}",
                             'write e.g. "0.9"'))
    return problems


def engine_args_problems(args: Mapping[str, Any], engines: Iterable[str]) -> list[str]:
    """AIM_ENGINE_ARGS judged by the recipe rules: the value rules above and true/false for
    switches (`--trust-remote-code "yes"` is refused in a recipe, so it is here). The renderer
    checks flag names and choices; this checks the values the planner reads."""
    from aim_engine.engines import flags
    from aim_engine.engines.base import normalize_key

    problems: list[str] = []
    for raw, value in args.items():
        arg = normalize_key(str(raw))
        for engine in engines:
            found = [f"{message} ({hint})" for message, hint in value_problems(arg, value, engine)]
            native = (canonical_args().get(arg, {}).get(engine) or {}).get("flag") or arg
            info = flags.flag_info(engine, native)
            if info is not None and not info.takes_value and not _switch_value_ok(value):
                found.append(f"{arg} is a switch; {value!r} is not true/false (write true, false or null)")
            problems.extend(p for p in found if p not in problems)
    return problems


def check_arg_values(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    """Counts, sizes and fractions in range; no control characters or infinite numbers."""
    from aim_engine.engines import recipe_args as ra

    for config in recipe.configs:
        owned = (*ra.spellings(ra.TENSOR_PARALLEL, config.engine), *ra.spellings(ra.DATA_PARALLEL, config.engine),
                 *ra.spellings(ra.PIPELINE_PARALLEL, config.engine))
        for arg, value in config.args.items():
            if arg in owned:
                continue     # the tensor-parallel check owns these (and says what N_gpu needs)
            for message, hint in value_problems(arg, value, config.engine):
                yield doc.problem("arg-values", _arg_path(config, arg), message, hint)


def _switch_value_ok(value: Any) -> bool:
    return value is None or isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in (*TRUE_FALSE, ""))


def check_hardware_precision(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    """The hardware exists and its architecture runs the recipe: the precision (no fp8 or MXFP4
    on gfx90a), each enabled config's engine (no SGLang on gfx90a), KV-cache dtype and attention
    backend. What runs where is the capability table's (hardware/gpus.yaml `gfx:`)."""
    from aim_engine.engines import recipe_args as ra
    from aim_engine.hardware import gpus

    hw = recipe.hardware
    if hw.upper() == "CPU":
        if recipe.precision not in CPU_PRECISIONS:
            yield doc.problem("hardware", ("precision",), f"CPU does not run {recipe.precision}",
                              f"use one of: {', '.join(CPU_PRECISIONS)} on this hardware")
        return
    if hw.lower().startswith("gfx"):
        caps = gpus.gfx_spec(hw)
        if caps is None:
            yield doc.problem("hardware", ("hardware",), f"unknown gfx target {hw!r}",
                              f"known: {', '.join(gpus.known_gfx())}")
            return
        what = hw.lower()
    else:
        gpu = gpus.find(hw)
        if gpu is None:
            yield doc.problem("hardware", ("hardware",), f"unknown GPU model {hw!r}",
                              f"known: {', '.join(gpus.names())}, a gfx target, or CPU")
            return
        caps, what = gpus.capabilities(gpu.gfx), f"{gpu.name} ({gpu.gfx})"
    if not caps.runs(recipe.precision):
        yield doc.problem("hardware", ("precision",), f"{what} does not run {recipe.precision}",
                          f"use one of: {', '.join(caps.precisions)} on this hardware")
    for config in recipe.configs:
        if not config.enabled:
            continue
        if not caps.runs_engine(config.engine):
            yield doc.problem("hardware", _config_path(config), f"{ENGINE_NAME[config.engine]} does not run on {what}",
                              f"engines there: {', '.join(ENGINE_NAME[e] for e in caps.engines)}; "
                              f"remove {SECTION[config.engine]} or disable the config")
            continue
        written, kv = ra.lookup(config.args, ra.KV_CACHE_DTYPE, config.engine)
        if written and isinstance(kv, str) and not caps.kv_cache_dtype_ok(kv):
            yield doc.problem("hardware", _arg_path(config, written), f"{what} cannot use --kv-cache-dtype {kv}",
                              f"use one of: {', '.join(caps.kv_cache_dtypes)}")
        backend = config.args.get("--attention-backend")
        allowed = caps.attention_backends.get(config.engine, ())
        if isinstance(backend, str) and backend not in allowed:
            yield doc.problem("hardware", _arg_path(config, "--attention-backend"),
                              f"{ENGINE_NAME[config.engine]} attention backend {backend} does not run on {what}",
                              f"use one of: {', '.join(allowed) or '(none listed: drop the flag)'}")


def check_dtype(doc: Any, recipe: Recipe, ctx: Context) -> Iterator[Problem]:
    """--dtype agrees with precision, and a quantized precision has something that quantizes."""
    precision = recipe.precision
    if precision == "mixed":
        return
    model = ctx.model(recipe.model_id)
    variant = model.checkpoint(recipe.huggingface_id) if model else None
    checkpoint = variant.precision if variant else (model.native_dtype if model else None)
    for config in recipe.configs:
        raw = config.args.get("--dtype")
        dtype = str(raw).strip().lower() if raw is not None else "auto"
        quantization = config.args.get("--quantization")
        where = _arg_path(config, "--dtype") if raw is not None else (*_config_path(config), "args")
        if dtype in WIDE_DTYPES:
            yield doc.problem("dtype", where, f"--dtype {raw} loads 32-bit weights but precision is {precision}",
                              f"use --dtype {HALF_DTYPES.get(precision, ('bfloat16',))[0]}")
            continue
        if precision in HALF_DTYPES:
            if dtype == "auto":
                if checkpoint is not None and checkpoint != precision:
                    yield doc.problem("dtype", where, f"--dtype auto loads the checkpoint's {checkpoint} weights, not {precision}",
                                      f"set --dtype: {HALF_DTYPES[precision][0]}")
            elif dtype not in HALF_DTYPES[precision]:
                yield doc.problem("dtype", where, f"--dtype {raw} does not match precision {precision}",
                                  f"use --dtype: {HALF_DTYPES[precision][0]}")
            if quantization not in (None, False):
                yield doc.problem("dtype", _arg_path(config, "--quantization"),
                                  f"--quantization {quantization} with precision {precision}",
                                  "set precision to the quantized type, or drop --quantization")
            continue
        # fp8 / int8 / int4: something must make the weights that precision.
        if dtype == FP8_DTYPE and precision != "fp8":
            yield doc.problem("dtype", where, f"--dtype float8 means FP8 quantization but precision is {precision}",
                              "use --dtype: auto with a quantized checkpoint or --quantization")
            continue
        if dtype not in ("auto", FP8_DTYPE, *HALF_DTYPES["fp16"], *HALF_DTYPES["bf16"]):
            continue  # an unknown spelling is the engine-args check's business
        quantized = (checkpoint == precision or quantization not in (None, False)
                     or (precision == "fp8" and dtype == FP8_DTYPE))
        if not quantized and checkpoint is not None:
            yield doc.problem("dtype", where, f"precision {precision} but the checkpoint is {checkpoint} and nothing quantizes it",
                              f"load a {precision} variant, add --quantization, or (fp8) --dtype: float8")


# --------------------------------------------------------------------------- model checks
def check_model_facts(doc: Any, model: Model, ctx: Context) -> Iterator[Problem]:
    """Facts that contradict each other (the planner's memory math relies on them)."""
    if model.parameters_active > model.parameters_total:
        yield doc.problem("model-facts", ("parameters", "active"), "more active than total parameters",
                          "active = parameters used per token; it is at most total")
    att = model.attention
    if att.kind != "mla" and (att.kv_heads > att.heads or att.heads % att.kv_heads):
        yield doc.problem("model-facts", ("attention", "kv_heads"),
                          f"{att.heads} attention heads cannot share {att.kv_heads} KV heads evenly",
                          "copy num_attention_heads and num_key_value_heads from config.json")
    if model.moe is not None and model.moe.experts_per_token > model.moe.experts:
        yield doc.problem("model-facts", ("moe", "experts_per_token"), "more experts per token than experts",
                          "copy num_experts_per_tok and the expert count from config.json")
    seen: set[str] = {model.huggingface_id}
    for index, variant in enumerate(model.variants):
        if variant.huggingface_id in seen:
            yield doc.problem("model-facts", ("variants", index, "huggingface_id"),
                              f"variant {variant.huggingface_id} repeats the model or another variant",
                              "list each checkpoint once")
        seen.add(variant.huggingface_id)


# ------------------------------------------------------------------------- catalog checks
def check_duplicate_recipes(ctx: Context) -> Iterator[Problem]:
    first: dict[str, Any] = {}
    for doc in ctx.recipe_docs:
        if not doc.schema_ok:
            continue
        rid = doc.obj.recipe_id
        if rid in first:
            yield doc.problem("duplicate-recipe", ("recipe_id",), f"recipe_id {rid!r} is also defined in {first[rid].display}",
                              "recipe ids are unique across all recipe directories; rename or remove one")
        else:
            first[rid] = doc


def check_duplicate_models(ctx: Context) -> Iterator[Problem]:
    """No two model files claim the same id, alias, slug or checkpoint (case-insensitive)."""
    owner: dict[str, tuple[Any, str]] = {}
    for doc in ctx.model_docs:
        if not doc.schema_ok:
            continue
        model: Model = doc.obj
        own = {n.lower() for n in model.names()}
        for name in sorted(own):
            if name in owner and owner[name][0] is not doc:
                other_doc, other_id = owner[name]
                key = "model_id" if name == model.model_id.lower() else "aliases"
                yield doc.problem("duplicate-model", (key,),
                                  f"{name!r} also names {other_id} ({other_doc.display})",
                                  "every model id, alias, slug and variant must be unique across model files")
            else:
                owner.setdefault(name, (doc, model.model_id))


CHECKS: tuple[Check, ...] = (
    Check("recipe-id", RECIPE_SCOPE, check_recipe_id, "recipe_id = file stem = {model}-{hardware}-{precision}"),
    Check("model-exists", RECIPE_SCOPE, check_model_exists, "model_id is in the model catalog"),
    Check("checkpoint", RECIPE_SCOPE, check_checkpoint, "huggingface_id is the model or a declared variant"),
    Check("enabled-config", RECIPE_SCOPE, check_enabled, "at least one serving config is enabled"),
    Check("tensor-parallel", RECIPE_SCOPE, check_tensor_parallel,
          "an N_gpu config's TP (× PP × DP) is N; an MxN_gpu config's covers M × N"),
    Check("engine-args", RECIPE_SCOPE, check_engine_args, "args are canonical or real engine flags"),
    Check("arg-values", RECIPE_SCOPE, check_arg_values, "counts, sizes and fractions are in range; values are plain"),
    Check("hardware", RECIPE_SCOPE, check_hardware_precision,
          "the hardware's architecture runs the precision, engine, KV-cache dtype and attention backend"),
    Check("dtype", RECIPE_SCOPE, check_dtype, "--dtype agrees with precision"),
    Check("model-facts", MODEL_SCOPE, check_model_facts, "model facts are consistent"),
    Check("duplicate-recipe", CATALOG_SCOPE, check_duplicate_recipes, "recipe ids are unique"),
    Check("duplicate-model", CATALOG_SCOPE, check_duplicate_models, "model ids and aliases are unique"),
)


def all_checks() -> tuple[Check, ...]:
    """The built-in checks plus every extension module's `CHECKS` (missing modules are skipped)."""
    found = list(CHECKS)
    for name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that area has not shipped its checks (yet)
            raise
        found.extend(getattr(module, "CHECKS", ()))
    return tuple(found)
