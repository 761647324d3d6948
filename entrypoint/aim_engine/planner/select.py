"""Choosing the recipe: settings + hardware + catalog -> one `Plan`, with the reasons.

`select()` resolves AIM_MODEL_ID (`model_source.resolve`, the only I/O, and only for a model
outside the catalog) and hands over to `choose()`, which is pure.

Every candidate is one (recipe, engine, GPU count) config. It is rejected, with the reason,
when (in this order):
1. the recipe's hardware does not match: the exact GPU model matches; a recipe for a `gfx…`
   name matches any device of that gfx (generic); a recipe for another GPU of the same gfx
   family with no more nominal memory per device is a fallback (marked in `fallback_hardware`).
   Drivers report a little less than the nominal memory (an MI355X shows 287.98 GiB), so the
   comparison allows `gpus.reported_memory_share` (gpus.yaml): MI355X recipes serve an MI350X,
   MI300X recipes an MI308X; the memory check below still uses what the driver reports;
2. the GPU's architecture cannot run the recipe's precision, the config's engine or its KV-cache
   dtype (the capability table in hardware/gpus.yaml: no fp8, MXFP4 or SGLang on gfx90a);
3. it conflicts with an override: AIM_PRECISION, AIM_ENGINE, or a variant named in AIM_MODEL_ID;
   or its engine is not installed here while another engine is (the inventory, engines/inventory.py;
   on a machine with no engine at all, e.g. a laptop planning, nothing is rejected for it and the
   plan says the engine is not installed here);
4. the config is disabled, or needs more GPUs than are visible (after AIM_GPU_COUNT);
5. its tensor-parallel size is illegal for the model, or it does not fit in the memory of the
   devices actually present (the planner; AIM_ENGINE_ARGS context/batch overrides count; what
   no arg sets is the engine's own default, `planner.reading`).
An `N_gpu` config runs TP x DP = N as the recipe writes it (TP 2 x DP 2 on 4 GPUs).
AIM_RECIPE_ID is applied last, so a pinned recipe that cannot run gets an error listing the
recipes that can. When no catalog candidate survives (and nothing is pinned), recipes are
synthesized from the model facts (`synthesize.gpu_recipes`) and checked the same way; without a
GPU the plan is vLLM's CPU backend (`synthesize.cpu_recipe`).

The survivors are ranked by (precision preference, hardware match, engine preference, metric):
precision bf16 > fp16 > fp8 > mixed > int8 > int4 (or AIM_PRECISION); exact > generic > fallback;
vLLM > SGLang (AIM_ENGINE=auto); latency = the largest tensor-parallel size, throughput = the
smallest, with the remaining GPUs filled by more data-parallel replicas of the config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from aim_engine.catalog.types import Model, Recipe, ServeConfig, int_arg
from aim_engine.errors import AimError
from aim_engine.engines import recipe_args as ra
from aim_engine.planner import memory, sizing, synthesize
from aim_engine.planner.model_source import ModelSource, resolve
from aim_engine.planner.plan import Plan, Rejection
from aim_engine.planner.reading import ConfigReading, Unreadable, read

if TYPE_CHECKING:
    from aim_engine.engines.inventory import Inventory
    from aim_engine.hardware.group import Group
    from aim_engine.hardware.types import Hardware
    from aim_engine.settings import Settings

# Automatic precision preference (AIM_PRECISION=auto): best quality that fits first. fp16 is a
# 16-bit peer of bf16, ranked just after it (bf16 is the native dtype of nearly every modern
# checkpoint and has fp32's range); "mixed" (e.g. MXFP4 checkpoints) is a native 4-8 bit format.
PRECISION_PREFERENCE: dict[str, int] = {"bf16": 0, "fp16": 1, "fp8": 2, "mixed": 3, "int8": 4, "int4": 5}
SIXTEEN_BIT = memory.SIXTEEN_BIT     # one 16-bit class: the same memory, the engine casts
ENGINE_PREFERENCE: dict[str, int] = {"vllm": 0, "sglang": 1}
HARDWARE_TIERS = ("exact", "generic", "fallback")



@dataclass(frozen=True)
class Candidate:
    recipe: Recipe
    config: ServeConfig
    tier: str                         # exact | generic | fallback
    fallback: str | None              # the recipe's hardware, when tier == fallback
    match: str                        # why the hardware matches, in words
    reading: ConfigReading
    fit: "memory.Fit"

    @property
    def context(self) -> int:
        return self.reading.context

    @property
    def batch(self) -> int:
        return self.reading.batch

    @property
    def tp(self) -> int:
        return self.reading.tp

    @property
    def width(self) -> int:
        """GPUs one copy of the model spans (TP × PP): what AIM_METRIC ranks."""
        return self.reading.tp * self.reading.pp

    @property
    def split(self) -> str:
        return f"TP {self.reading.tp}" + (f" x PP {self.reading.pp}" if self.reading.pp > 1 else "")


# ---------------------------------------------------------------- small pure helpers


def effective_sizes(model: Model, config: ServeConfig, engine_args: Mapping[str, Any],
                    memory_bytes: int | None) -> ConfigReading | Unreadable:
    """What the engine will really use: AIM_ENGINE_ARGS over the recipe's args, the engine's own
    defaults where neither says (`planner.reading`, shared with the validator)."""
    return read(model, config, memory_bytes, engine_args)


def hardware_match(recipe_hardware: str, hardware: "Hardware") -> tuple[str | None, str]:
    """(tier or None, why) for a recipe's `hardware` against the detected devices."""
    from aim_engine.hardware import gpus

    want = recipe_hardware.strip()
    model, gfx = hardware.gpu_model or "", (hardware.gfx or "").lower()
    if want.lower().startswith("gfx"):   # before the name check: unknown devices are named by gfx
        if want.lower() == gfx:
            return "generic", f"generic recipe for {want} devices"
        return None, f"generic recipe for {want}; the detected GPUs are {gfx or 'none'}"
    if want.upper() == model.upper():
        return "exact", f"written for {want}, the detected GPU"
    spec = gpus.find(want)
    if spec is None:
        return None, f"written for {want}, not a GPU in the spec table"
    have = hardware.memory_per_gpu_bytes
    if spec.gfx != gfx:
        return None, f"written for {want} ({spec.gfx}); the detected {model} is {gfx}"
    share = gpus.reported_memory_share()
    if not gpus.covers_memory(spec.memory_bytes, have):
        return None, (f"written for {want} ({spec.memory_gib:.0f} GiB per device); the detected {model} reports "
                      f"{have / memory.GIB:.2f} GiB, less than {share:.0%} of that")
    return "fallback", (f"the {want} recipe family, used on {model} as a same-family fallback ({spec.gfx}; "
                        f"{have / memory.GIB:.2f} GiB reported, at least {share:.0%} of {want}'s "
                        f"{spec.memory_gib:.0f} GiB per device)")


def precision_allowed(requested: str, recipe_precision: str) -> bool:
    """AIM_PRECISION against a recipe's precision. fp16 and bf16 are one 16-bit class (the same
    memory; the engine casts), the exact one ranked first; every other precision is exact."""
    if requested == "auto" or requested == recipe_precision:
        return True
    return requested in SIXTEEN_BIT and recipe_precision in SIXTEEN_BIT


def _rank(c: Candidate, settings: "Settings") -> tuple:
    p = c.recipe.precision
    if settings.precision == "auto":
        precision_rank = PRECISION_PREFERENCE.get(p, len(PRECISION_PREFERENCE))
    else:
        precision_rank = 0 if p == settings.precision else 1
    size = -c.width if settings.metric == "latency" else c.width
    return (precision_rank, HARDWARE_TIERS.index(c.tier), ENGINE_PREFERENCE.get(c.config.engine, 9), size,
            -c.fit.margin_gib, c.recipe.recipe_id)


def memory_reason(fit: "memory.Fit", context: int, batch: int) -> str:
    """A one-line 'does not fit' with the numbers (the planner's `explanation` has the long form)."""
    return (f"memory: does NOT fit: {fit.used_gib:.1f} GiB per GPU needed (weights {fit.weights_gib:.1f} + KV "
            f"{fit.kv_gib:.1f} for {batch} x {context} tokens + overhead {fit.overhead_gib:.1f}) > "
            f"{fit.available_gib:.1f} GiB usable")


def longest_context(model: Model, precision: str, memory_bytes: int, gpus: int, batch: int,
                    kv_cache_dtype: str | None, utilization: float, pp: int = 1) -> int:
    """The longest context at which `batch` sequences fit (for 'a context of N would fit').

    Same answer as `memory.max_context`, in closed form: without sliding-window layers the KV
    cache is linear in the context and nothing else depends on it, so
    N = (usable - weights - overhead) / KV bytes per token of context. Selection asks this for
    every rejected config, and the planner's binary search (~17 fit checks each) was most of the
    time of a large catalog. Sliding-window models keep the exact search.
    """
    if model.attention.sliding_window:
        return memory.max_context(model, precision, memory_bytes, gpus, batch, kv_cache_dtype, utilization, pp=pp)
    kv_dtype = memory.resolve_kv_dtype(model, precision, kv_cache_dtype)
    per_token = memory.kv_cache_bytes(model, 1, batch, memory.kv_element_bytes(kv_dtype), gpus, pp)
    room = (memory_bytes * utilization - memory.weights_bytes(model, precision) / (gpus * pp)
            - memory.overhead_bytes(model, memory_bytes, batch))
    if room < per_token:
        return 0
    return min(model.max_position_embeddings, int(room // per_token))


def visibility_reason(hardware: "Hardware", used: int, visible: str) -> str:
    """Why the engine is shown only some GPUs (`visible` = `Hardware.hip_visible_devices(used)`).

    The engine sees exactly the GPUs the plan uses, the first `used` of the detected ones in ROCm
    order: GPUs the agent set aside (another model on a mixed node, AIM_GPU_COUNT) and GPUs the
    plan leaves idle (TP x DP < GPUs) are hidden, so nothing in the engine (device-count
    defaults, memory profiling, collective setup) can touch them. The first ones, because
    neighbours in ROCm order are the best-connected pairs (the two GCDs of an MI250 card).
    """
    left = [f"{hardware.visible_count - hardware.gpu_count} set aside by detection"] \
        if hardware.visible_count > hardware.gpu_count else []
    if used < hardware.gpu_count:
        left.append(f"{hardware.gpu_count - used} left idle by the plan")
    return (f"the engine sees only the {used} GPU(s) it uses: HIP_VISIBLE_DEVICES=CUDA_VISIBLE_DEVICES={visible} "
            f"(indices into the ROCR-visible list; of {hardware.visible_count} visible, "
            + ", ".join(left or ["reordered"]) + ")")


def _lost(other: Candidate, winner: Candidate, settings: "Settings") -> str:
    """The first ranking rule on which `other` lost to `winner`, in words."""
    a, b = _rank(other, settings), _rank(winner, settings)
    if a[0] != b[0]:
        rule = "AIM_PRECISION" if settings.precision != "auto" else "bf16 > fp16 > fp8 > mixed > int8 > int4"
        return f"precision {other.recipe.precision} vs {winner.recipe.precision} ({rule})"
    if a[1] != b[1]:
        return f"{other.tier} hardware match vs {winner.tier} (exact > generic > fallback)"
    if a[2] != b[2]:
        return f"engine {other.config.engine} vs {winner.config.engine} (vLLM preferred)"
    if a[3] != b[3]:
        rule = "the largest" if settings.metric == "latency" else "the smallest"
        return f"{other.split} vs {winner.split} (AIM_METRIC={settings.metric} takes {rule})"
    return f"smaller memory margin ({other.fit.margin_gib:+.1f} vs {winner.fit.margin_gib:+.1f} GiB) or recipe id order"


# ---------------------------------------------------------------- evaluation


def _reject(into: list[Rejection], recipe_id: str, config: ServeConfig, reason: str) -> None:
    """Record why one config of a recipe was rejected (its engine, GPUs per node and nodes)."""
    into.append(Rejection(recipe_id, config.engine, config.gpus, reason, config.nodes))


def evaluate(recipes: Iterable[Recipe], model: Model, settings: "Settings", hardware: "Hardware",
             variant_id: str | None = None, inventory: "Inventory | None" = None,
             ) -> tuple[list[Candidate], list[Rejection]]:
    """Every config of `recipes` either survives as a Candidate or is rejected with a reason.
    AIM_RECIPE_ID is *not* applied here (see `choose`)."""
    from aim_engine.hardware import gpus

    missing = _missing_engines(inventory)
    caps = gpus.capabilities(hardware.gfx)
    visible = hardware.gpu_count
    memory_bytes = hardware.memory_per_gpu_bytes
    group = hardware.group
    ask = None
    if group.is_multi_node:
        from aim_engine.planner import across_nodes

        ask = across_nodes.asked(hardware)
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    fits: dict[tuple, memory.Fit] = {}     # check_fit is pure: one call per distinct sizing
    for recipe in recipes:
        rid = recipe.recipe_id
        tier, why = hardware_match(recipe.hardware, hardware)
        if tier is None:
            rejected.append(Rejection(rid, None, None, f"hardware: {why}"))
            continue
        if not caps.runs(recipe.precision):
            rejected.append(Rejection(rid, None, None, f"precision: {hardware.gfx} cannot run {recipe.precision} "
                                      f"(it runs {', '.join(caps.precisions)})"))
            continue
        if not precision_allowed(settings.precision, recipe.precision):
            rejected.append(Rejection(rid, None, None, f"AIM_PRECISION={settings.precision}, recipe is {recipe.precision}"))
            continue
        if variant_id and recipe.huggingface_id.lower() != variant_id.lower():
            rejected.append(Rejection(rid, None, None,
                                      f"loads {recipe.huggingface_id}; AIM_MODEL_ID asks for {variant_id}"))
            continue
        for config in recipe.configs:
            engine, n = config.engine, config.gpus
            if not config.enabled:
                _reject(rejected, rid, config, "disabled in the recipe")
                continue
            if settings.engine != "auto" and engine != settings.engine:
                _reject(rejected, rid, config, f"AIM_ENGINE={settings.engine}")
                continue
            if not caps.runs_engine(engine):
                _reject(rejected, rid, config, f"engine: {engine} does not run on {hardware.gfx} "
                        f"(engines there: {', '.join(caps.engines)})")
                continue
            if engine in missing:
                _reject(rejected, rid, config, missing[engine])
                continue
            if config.nodes != group.nodes:
                if config.nodes == 1:   # a group deployed on purpose is used whole (docs/selection.md)
                    why = f"a one-node config; the group of {group.nodes} nodes ({group.source}) is used whole"
                else:
                    why = f"needs a group of {config.nodes} nodes × {n} GPUs; " + (
                        f"this group has {group.nodes} nodes ({group.source})" if group.is_multi_node
                        else "this node is not in a group (AIM_NODE_COUNT, docs/multinode.md)")
                _reject(rejected, rid, config, why)
                continue
            if n > visible:
                source = " (AIM_GPU_COUNT)" if settings.gpu_count is not None else ""
                per_node = " per node" if config.nodes > 1 else ""
                _reject(rejected, rid, config, f"needs {n} GPUs{per_node}, {visible} visible{source}")
                continue
            reading = effective_sizes(model, config, settings.engine_args, memory_bytes)
            if isinstance(reading, Unreadable):
                _reject(rejected, rid, config, f"args: {reading}")
                continue
            tp, context, batch, utilization, kv = (reading.tp, reading.context, reading.batch, reading.utilization,
                                                   reading.kv_cache_dtype)
            if reading.gpus != config.total_gpus:
                pipeline = f" x pipeline parallel {reading.pp}" if reading.pp > 1 else ""
                _reject(rejected, rid, config, f"args: tensor parallel {tp}{pipeline} x data parallel {reading.dp} "
                        f"is not the {config.total_gpus} GPUs of {config.name}")
                continue
            if ask is not None and (tp, reading.pp) != (ask.tp, ask.pp):
                _reject(rejected, rid, config, f"the deployment asks {ask.describe()} (TENSOR_PARALLEL_SIZE, "
                        f"PIPELINE_PARALLEL_SIZE); this config is TP {tp} x PP {reading.pp}")
                continue
            if kv is not None and not caps.kv_cache_dtype_ok(kv):
                _reject(rejected, rid, config, f"KV cache: {hardware.gfx} cannot use --kv-cache-dtype {kv} "
                        f"(it takes {', '.join(caps.kv_cache_dtypes)})")
                continue
            pp = reading.pp
            illegal = memory.tp_legal(model, tp)
            if illegal:
                _reject(rejected, rid, config, f"tensor parallel: {illegal}")
                continue
            illegal = memory.pp_legal(model, pp)
            if illegal:
                _reject(rejected, rid, config, f"pipeline parallel: {illegal}")
                continue
            key = (recipe.precision, tp, pp, context, batch, kv, utilization)
            fit = fits.get(key)
            if fit is None:   # the vLLM and SGLang configs of a recipe usually share their sizes
                try:
                    fit = fits[key] = memory.check_fit(model, recipe.precision, memory_bytes, tp, context, batch, kv,
                                                       utilization, pp=pp)
                except ValueError as exc:
                    _reject(rejected, rid, config, f"memory: cannot size it ({exc})")
                    continue
            if not fit.fits:
                longest = longest_context(model, recipe.precision, memory_bytes, tp, batch, kv, utilization, pp)
                more = (f"; a context of {longest} tokens would fit" if longest >= 1
                        else "; not even one short sequence fits")
                _reject(rejected, rid, config, memory_reason(fit, context, batch) + more)
                continue
            candidates.append(Candidate(recipe, config, tier, recipe.hardware if tier == "fallback" else None,
                                        why, reading, fit))
    return candidates, rejected


def _missing_engines(inventory: "Inventory | None") -> dict[str, str]:
    """engine -> why it cannot be chosen, for the engines not installed here. Empty when the
    inventory is unknown (None) or holds no engine at all: a machine without any engine plans
    for the image, it does not serve (boot refuses the exec before any download)."""
    if inventory is None or inventory.empty:
        return {}
    from aim_engine.engines.inventory import PROBES, label, where

    return {p.engine: f"engine: {label(p.engine)} is not installed {where(inventory)}"
            for p in PROBES if inventory.get(p.engine) is None}


def _check_engine_installed(settings: "Settings", inventory: "Inventory | None") -> None:
    """AIM_ENGINE naming an engine this image lacks: an error at once, before the model is even
    resolved (which may reach the hub), naming the image flavour that has it."""
    if settings.engine != "auto" and settings.engine in _missing_engines(inventory):
        from aim_engine.engines.inventory import missing

        raise missing(settings.engine, inventory, f"AIM_ENGINE={settings.engine}")   # type: ignore[arg-type]


def _with_engine(plan: Plan, inventory: "Inventory | None") -> Plan:
    """The plan, with the installed engine that will run it (or a note that none is installed here)."""
    if inventory is None:
        return plan
    found = inventory.get(plan.engine)
    if found is not None:
        note = f"engine {found.describe()} is installed" + (f" (image flavour {inventory.flavour})"
                                                            if inventory.flavour else "")
    else:
        from aim_engine.engines.inventory import where

        note = (f"engine {plan.engine} is not installed {where(inventory)}: this plan is for a machine "
                "that has it (`serve` would stop before any download)")
    return replace(plan, reasons=(*plan.reasons, note), engine_found=found, engine_checked=True)


def _check_overrides(settings: "Settings", hardware: "Hardware") -> None:
    """Overrides that can never be satisfied on this hardware are errors, not empty plans."""
    from aim_engine.hardware import gpus

    if hardware.is_cpu or settings.precision in ("auto",):
        return
    allowed = gpus.gfx_precisions(hardware.gfx or "")
    if settings.precision not in allowed:
        raise AimError(
            f"AIM_PRECISION={settings.precision} is not supported on {hardware.gpu_model} ({hardware.gfx}): "
            + ("it has no FP8 matrix units" if settings.precision == "fp8" else "not a native precision of this GPU"),
            hint=f"use one of {', '.join(allowed)} (or auto)",
        )


def _check_engine_args(settings: "Settings") -> None:
    """AIM_ENGINE_ARGS values, by the rules recipe args obey (catalog.checks: one table), before
    they size anything: a context of 1e30 must not skip the memory check, a TP of -1 must not
    render while the plan says 8."""
    if not settings.engine_args:
        return
    from aim_engine.catalog.checks import engine_args_problems

    engines = ("vllm", "sglang") if settings.engine == "auto" else (settings.engine,)
    problems = engine_args_problems(settings.engine_args, engines)
    if problems:
        raise AimError("AIM_ENGINE_ARGS: " + "; ".join(problems[:10])
                       + (f"; and {len(problems) - 10} more" if len(problems) > 10 else ""),
                       hint="the values AIM_ENGINE_ARGS sets obey the same rules as a recipe's args "
                            "(docs/inputs.md)")


def _pinned(settings: "Settings", catalog: Any, inventory: "Inventory | None" = None) -> Recipe | None:
    if not settings.recipe_id:
        return None
    recipe = catalog.recipe(settings.recipe_id)      # case-insensitive; parses only that file
    if recipe is None:
        model = catalog.find_model(settings.model_id) if settings.model_id else None
        ids = [r.recipe_id for r in catalog.recipes_for(model)] if model else []
        raise AimError(f"AIM_RECIPE_ID={settings.recipe_id!r} is not in the catalog",
                       hint=("recipes of this model: " + ", ".join(ids)) if ids else
                       "see `aim-engine recipes list --all`")
    problems = []
    if not precision_allowed(settings.precision, recipe.precision):
        problems.append(f"AIM_PRECISION={settings.precision} but the recipe is {recipe.precision}")
    engines = sorted({c.engine for c in recipe.configs if c.enabled})
    if settings.engine != "auto" and settings.engine not in engines:
        problems.append(f"AIM_ENGINE={settings.engine} but the recipe has only {', '.join(engines) or 'no enabled'} configs")
    if problems:
        raise AimError(f"conflicting overrides: AIM_RECIPE_ID={recipe.recipe_id}: " + "; ".join(problems),
                       hint="drop one of the conflicting variables")
    missing = _missing_engines(inventory)
    usable = [e for e in engines if settings.engine in ("auto", e)]
    if usable and all(e in missing for e in usable):
        from aim_engine.engines.inventory import missing as not_installed

        raise not_installed(usable[0], inventory, f"AIM_RECIPE_ID={recipe.recipe_id} "   # type: ignore[arg-type]
                            f"has only {', '.join(usable)} configs")
    return recipe


def _describe_hw(hardware: "Hardware") -> str:
    if hardware.is_cpu:
        return f"CPU ({hardware.cpu.model})"
    return f"{hardware.gpu_count}x {hardware.gpu_model} ({hardware.gfx}, {hardware.memory_per_gpu_bytes / memory.GIB:.0f} GiB each)"


def _summarize(rejected: list[Rejection], limit: int = 8) -> str:
    lines = [f"  - {r.recipe_id}{r.label}: {r.reason}"
             for r in rejected[:limit]]
    if len(rejected) > limit:
        lines.append(f"  - … and {len(rejected) - limit} more (`aim-engine plan --json` lists all)")
    return "\n".join(lines)


# ---------------------------------------------------------------- the plan


def _finish(source: ModelSource, candidate: Candidate, settings: "Settings", hardware: "Hardware",
            rejected: list[Rejection], others: list[Candidate], reasons: list[str]) -> Plan:
    recipe, config = candidate.recipe, candidate.config
    tp, pp, recipe_dp = candidate.reading.tp, candidate.reading.pp, candidate.reading.dp
    multi = config.nodes > 1
    # Throughput fills one node with data-parallel copies; a group runs the config as written
    # (data parallelism across nodes is another deployment: more single-node replicas).
    replicas = max(1, hardware.gpu_count // config.gpus) if settings.metric == "throughput" and not multi else 1
    dp = recipe_dp * replicas
    used = tp * pp * dp
    per_node = used // config.nodes
    checkpoint = source.checkpoint if source.kind == "local" else recipe.huggingface_id
    owned = (*ra.spellings(ra.TENSOR_PARALLEL, config.engine), *ra.spellings(ra.DATA_PARALLEL, config.engine),
             *ra.spellings(ra.PIPELINE_PARALLEL, config.engine))
    args = {k: v for k, v in config.args.items() if k not in owned}
    args["--model"] = checkpoint
    args["--tensor-parallel-size"] = str(tp)
    if pp > 1:
        args["--pipeline-parallel-size"] = str(pp)
    if dp > 1:
        args["--data-parallel-size"] = str(dp)
    if settings.precision in SIXTEEN_BIT and recipe.precision in SIXTEEN_BIT and recipe.precision != settings.precision:
        args["--dtype"] = sizing.DTYPE_ARG[settings.precision]
        reasons.append(f"AIM_PRECISION={settings.precision}: serving the {recipe.precision} recipe with "
                       f"--dtype {args['--dtype']} (same memory)")
    plan_config = replace(config, args=args)

    reasons.append(f"recipe {recipe.recipe_id}: {candidate.match}")
    if settings.recipe_id:
        reasons.append(f"AIM_RECIPE_ID={settings.recipe_id} pins this recipe")
    if settings.precision == "auto":
        reasons.append(f"precision {recipe.precision}: the most preferred precision that fits "
                       "(bf16 > fp16 > fp8 > mixed > int8 > int4)")
    else:
        reasons.append(f"precision {recipe.precision}: AIM_PRECISION={settings.precision}")
    engines = {c.config.engine for c in others}
    if settings.engine != "auto":
        reasons.append(f"engine {config.engine}: AIM_ENGINE={settings.engine}")
    elif config.engine == "sglang" and "vllm" not in engines:
        reasons.append("engine sglang: no runnable vLLM config (auto prefers vLLM)")
    else:
        reasons.append(f"engine {config.engine}: AIM_ENGINE=auto prefers vLLM")
    warnings: list[str] = []
    if multi:
        reasons.extend(_group_reasons(candidate, settings, hardware, others, per_node))
        warnings.extend(_group_warnings(source, candidate, hardware, others))
    elif settings.metric == "latency":
        sizes = sorted({c.tp for c in others if c.recipe is recipe and c.config.engine == config.engine})
        reasons.append(f"AIM_METRIC=latency: the largest tensor-parallel size that fits of {sizes} -> TP {tp}"
                       + (f" x PP {pp}" if pp > 1 else "")
                       + (f" x DP {dp} (as the recipe's {config.gpus}_gpu config writes it)" if dp > 1 else ""))
    else:
        sizes = sorted({c.tp for c in others if c.recipe is recipe and c.config.engine == config.engine})
        reasons.append(f"AIM_METRIC=throughput: the smallest tensor-parallel size that fits of {sizes} -> TP {tp}, "
                       f"{dp} data-parallel replica(s) on {used} of {hardware.gpu_count} GPUs")
    idle = hardware.gpu_count - per_node
    if idle > 0 and (multi or settings.metric == "latency"):
        where = " on each node" if multi else ""
        more = "" if multi else (f" (AIM_METRIC=throughput would run {hardware.gpu_count // config.gpus} copies "
                                 f"of the {config.gpus}_gpu config)")
        reasons.append(f"{idle} of {hardware.gpu_count} GPUs stay idle{where}{more}")
    visible = hardware.hip_visible_devices(per_node)
    if visible is not None:
        reasons.append(visibility_reason(hardware, per_node, visible))
    reasons.append(f"memory per GPU: {candidate.fit.weights_gib:.1f} GiB weights + {candidate.fit.kv_gib:.1f} GiB KV "
                   f"({candidate.batch} x {candidate.context} tokens) + {candidate.fit.overhead_gib:.1f} GiB overhead "
                   f"of {candidate.fit.available_gib:.1f} GiB usable (margin {candidate.fit.margin_gib:+.1f} GiB)")
    reasons.extend(f"warning: {w}" for w in warnings)
    for other in others:
        if other is not candidate:
            rejected.append(Rejection(other.recipe.recipe_id, other.config.engine, other.config.gpus,
                                      "runnable, ranked lower: " + _lost(other, candidate, settings),
                                      other.config.nodes))
    return Plan(
        model=source.model, recipe=recipe, config=plan_config, engine=config.engine,
        tensor_parallel=tp, data_parallel=dp, gpus_used=used, checkpoint=checkpoint,
        served_model_name=source.served_model_name, precision=recipe.precision,
        context=candidate.context, batch=candidate.batch, reasons=tuple(reasons), rejected=tuple(rejected),
        synthesized=recipe.synthesized, fallback_hardware=candidate.fallback, visible_devices=visible,
        nodes=config.nodes, pipeline_parallel=pp, gpus_per_node=per_node if multi else None,
        group=hardware.group if multi else None, warnings=tuple(warnings),
    )


def _group_reasons(candidate: Candidate, settings: "Settings", hardware: "Hardware", others: list[Candidate],
                   per_node: int) -> list[str]:
    """Why the plan spans the group, and how it is split over it."""
    from aim_engine.planner import across_nodes

    recipe, config, reading = candidate.recipe, candidate.config, candidate.reading
    group = hardware.group
    default = across_nodes.split(config.engine, config.nodes, per_node)
    ask = across_nodes.asked(hardware)
    if ask is not None:
        how = (f"as the deployment asks (TENSOR_PARALLEL_SIZE={ask.tp}, PIPELINE_PARALLEL_SIZE={ask.pp}; "
               f"the engine's default: {default.describe()})")
    elif recipe.synthesized:
        how = across_nodes.why_split(config.engine)
    elif (reading.tp, reading.pp) == (default.tp, default.pp):
        how = f"as recipe {recipe.recipe_id}'s {config.name} config writes it ({across_nodes.why_split(config.engine)})"
    else:
        how = f"as recipe {recipe.recipe_id}'s {config.name} config writes it (the engine's default: {default.describe()})"
    sizes = sorted({c.config.gpus for c in others if c.recipe is recipe and c.config.engine == config.engine})
    rule = "the most" if settings.metric == "latency" else "the fewest"
    return [
        f"group: {across_nodes.describe_group(hardware)}: deployed on purpose, so the plan uses all "
        f"{group.nodes} nodes (docs/selection.md)",
        f"split over the group: {candidate.split} = {reading.gpus} GPUs, {per_node} per node; {how}",
        f"AIM_METRIC={settings.metric}: {rule} GPUs per node that fit of {sizes} -> {per_node}",
    ]


def _group_warnings(source: ModelSource, candidate: Candidate, hardware: "Hardware",
                    others: list[Candidate]) -> list[str]:
    """The model would fit on fewer nodes than the group has: the operator should know."""
    from aim_engine.planner import across_nodes

    recipe, config, reading = candidate.recipe, candidate.config, candidate.reading
    mismatch = across_nodes.ask_mismatch(hardware)
    out = [mismatch] if mismatch else []
    fewer = across_nodes.fewer_nodes(source.model, recipe.precision, hardware.memory_per_gpu_bytes, config.engine,
                                     config.gpus, config.nodes, reading.context, reading.batch,
                                     reading.kv_cache_dtype, reading.utilization)
    if fewer is not None:
        out.append(across_nodes.fewer_warning(fewer, config.nodes, reading.context, reading.batch,
                                              hardware.group.source))
    return out


def _cpu_plan(source: ModelSource, settings: "Settings", hardware: "Hardware", catalog_recipes: list[Recipe],
              reasons: list[str], inventory: "Inventory | None" = None) -> Plan:
    if settings.engine == "sglang":
        raise AimError("AIM_ENGINE=sglang needs a GPU: no GPU is visible and only vLLM has a CPU backend",
                       hint="unset AIM_ENGINE (or set it to vllm), or give the container a GPU")
    if "vllm" in _missing_engines(inventory):
        from aim_engine.engines.inventory import missing

        raise missing("vllm", inventory, "no GPU is visible and only vLLM has a CPU backend")  # type: ignore[arg-type]
    rejected = [Rejection(r.recipe_id, None, None, f"hardware: written for {r.hardware}; no GPU is visible")
                for r in catalog_recipes if r.hardware.upper() != "CPU"]
    cpu_recipes = [r for r in catalog_recipes if r.hardware.upper() == "CPU"
                   and precision_allowed(settings.precision, r.precision)]
    if settings.recipe_id:
        cpu_recipes = [r for r in cpu_recipes if r.recipe_id.lower() == settings.recipe_id.lower()]
        if not cpu_recipes:
            raise AimError(f"AIM_RECIPE_ID={settings.recipe_id} targets a GPU and no GPU is visible",
                           hint="unset AIM_RECIPE_ID to get a CPU plan, or give the container a GPU")
    checkpoint = source.checkpoint or source.model.huggingface_id
    if cpu_recipes:
        recipe = cpu_recipes[0]
        reasons.append(f"no GPU visible: {recipe.recipe_id} is the catalog's CPU recipe")
    else:
        precision = checkpoint_precision_of(source)
        recipe = synthesize.cpu_recipe(source.model, hardware.cpu, checkpoint, settings.precision, precision)
        one_rank = "" if hardware.group.is_multi_node else "tensor parallel 1, "
        reasons.append(f"no GPU visible: synthesized a plan for vLLM's CPU backend ({one_rank}"
                       f"{recipe.precision}, small context, eager mode) because catalog recipes target GPUs")
    config = next(c for c in recipe.configs if c.enabled and c.engine == "vllm")
    args = dict(config.args)
    if source.kind == "local" or recipe.synthesized:
        args["--model"] = checkpoint
    def pick(key: str, default: int) -> int:
        value = ra.lookup(settings.engine_args, key, "vllm")[1]
        number = int_arg(value if value is not None else ra.lookup(args, key, "vllm")[1])
        return default if number is None or number < 1 else number

    context = pick(ra.CONTEXT, synthesize.CPU_CONTEXT)
    batch = pick(ra.BATCH, synthesize.CPU_BATCH)
    group = hardware.group
    tp, pp = _cpu_group_split(source.model, group, args, reasons) if group.is_multi_node else (1, 1)
    return Plan(
        model=source.model, recipe=recipe, config=replace(config, args=args), engine="vllm",
        tensor_parallel=tp, data_parallel=1, gpus_used=0, checkpoint=str(args.get("--model", checkpoint)),
        served_model_name=source.served_model_name, precision=recipe.precision, context=context, batch=batch,
        reasons=tuple(reasons), rejected=tuple(rejected), synthesized=recipe.synthesized,
        fallback_hardware=None, target="cpu",
        **({"nodes": group.nodes, "pipeline_parallel": pp, "gpus_per_node": 0, "group": group}
           if group.is_multi_node else {}),
    )


def _cpu_group_split(model: Model, group: "Group", args: dict[str, object], reasons: list[str]) -> tuple[int, int]:
    """A group of CPU nodes runs one vLLM rank per node: tensor parallel across the nodes where
    the model allows it (it runs eager, so it boots fastest), else pipeline stages (the renderer
    then drops --enforce-eager: vLLM's CPU worker cannot run later stages eagerly). `args` is
    updated in place. docs/multinode.md, "Two-node run here"."""
    nodes = group.nodes
    for tp, pp in ((nodes, 1), (1, nodes)):
        if memory.parallel_legal(model, tp, pp) is None:
            args[ra.TENSOR_PARALLEL] = str(tp)
            if pp > 1:
                args[ra.PIPELINE_PARALLEL] = str(pp)
            how = f"tensor parallel {tp}" if pp == 1 else f"pipeline parallel {pp} (tensor parallel {nodes} is not legal: {memory.tp_legal(model, nodes)})"
            reasons.append(f"a group of {nodes} CPU nodes ({group.source}): one vLLM rank per node, {how} across the nodes")
            return tp, pp
    raise AimError(f"{model.model_id} cannot be split over the {nodes} CPU nodes of this group: tensor parallel {nodes}: "
                   f"{memory.tp_legal(model, nodes)}; pipeline parallel {nodes}: {memory.pp_legal(model, nodes)}",
                   hint="set AIM_NODE_COUNT to a count the model's heads and layers divide, or serve it on one node")


def checkpoint_precision_of(source: ModelSource) -> str | None:
    """The precision of the checkpoint the user named exactly (variant, local dir, hub id)."""
    if source.variant is not None:
        return source.variant.precision
    if source.kind == "catalog":
        return None
    return memory.native_precision(source.model)


def choose(source: ModelSource, settings: "Settings", hardware: "Hardware", recipes: list[Recipe],
           pinned: Recipe | None = None, inventory: "Inventory | None" = None) -> Plan:
    """The pure core: the best plan for `source.model` among `recipes` (the catalog's recipes of
    the model and its variants; empty outside the catalog), or an AimError that says why not.
    `inventory`: the engines installed here (None: unknown, nothing is rejected for it)."""
    reasons = list(source.notes)
    reasons.insert(0, f"hardware: {_describe_hw(hardware)}")
    if hardware.is_cpu:
        return _with_engine(_cpu_plan(source, settings, hardware, recipes, reasons, inventory), inventory)
    _check_overrides(settings, hardware)

    variant_id = source.variant.huggingface_id if source.variant else None
    candidates, rejected = evaluate(recipes, source.model, settings, hardware, variant_id, inventory)
    in_group = hardware.group.is_multi_node
    if not candidates and pinned is None:
        # The model is not in the catalog, nothing in the catalog is written for this GPU
        # family (or this group), or no catalog recipe runs here (too big, an override rules
        # them all out): size recipes from the model facts, checked exactly like catalog ones.
        make = synthesize.group_recipes if in_group else synthesize.gpu_recipes
        made = make(source.model, hardware, source.checkpoint, checkpoint_precision_of(source))
        more, more_rejected = evaluate(made, source.model, settings, hardware, variant_id, inventory)
        for option in synthesize.runnable(source.model, hardware, source.checkpoint,
                                          checkpoint_precision_of(source))[1]:
            more_rejected.append(Rejection(f"{source.model.slug}-{option.precision}-synthesized", None, None,
                                           f"precision: {hardware.gfx} cannot run {option.precision} "
                                           f"({option.checkpoint}); not synthesized"))
        candidates += more
        rejected += more_rejected
        hardware_ok = any(not r.reason.startswith("hardware:") for r in rejected[:len(rejected) - len(more_rejected)])
        if not source.in_catalog:
            why = f"{source.model.model_id} is not in the catalog"
        elif in_group:
            why = (f"no catalog recipe of {source.model.model_id} has a config for a group of "
                   f"{hardware.group.nodes} nodes x {hardware.gpu_count} {hardware.gpu_model} that runs here")
        elif not hardware_ok:
            why = f"the catalog has no {source.model.model_id} recipe for {hardware.gpu_model} ({hardware.gfx})"
        else:
            why = f"no catalog recipe of {source.model.model_id} runs here (see rejected)"
        reasons.append(f"{why}: synthesized recipes from the model's facts, sized by the memory planner")

    if pinned is not None:
        chosen = [c for c in candidates if c.recipe.recipe_id == pinned.recipe_id]
        if not chosen:
            why = [r for r in rejected if r.recipe_id == pinned.recipe_id]
            alternatives = sorted({c.recipe.recipe_id for c in candidates if c.recipe.recipe_id != pinned.recipe_id})
            raise AimError(
                f"AIM_RECIPE_ID={pinned.recipe_id} cannot run on {_describe_hw(hardware)}:\n" + _summarize(why),
                hint=("recipes that do run here: " + ", ".join(alternatives)) if alternatives else
                "no recipe of this model runs here either; see `aim-engine recipes list`",
            )
        rejected += [Rejection(c.recipe.recipe_id, c.config.engine, c.config.gpus,
                               f"AIM_RECIPE_ID={pinned.recipe_id}") for c in candidates if c not in chosen]
        candidates = chosen

    if not candidates and in_group:
        raise _group_error(source, settings, hardware, rejected)
    if not candidates:
        raise AimError(
            f"no recipe for {source.model.model_id} can run on {_describe_hw(hardware)}:\n" + _summarize(rejected),
            hint="give it more GPUs, a lower precision (AIM_PRECISION), or a shorter context "
                 "(AIM_ENGINE_ARGS='{\"--max-context-len\": \"8192\"}'); `aim-engine recipes list` shows what fits",
        )
    candidates.sort(key=lambda c: _rank(c, settings))
    return _with_engine(_finish(source, candidates[0], settings, hardware, rejected, candidates, reasons), inventory)


def _group_error(source: ModelSource, settings: "Settings", hardware: "Hardware",
                 rejected: list[Rejection]) -> AimError:
    """Nothing runs on the group: the numbers (per-GPU need vs usable, nodes × GPUs) first."""
    from aim_engine.hardware import gpus
    from aim_engine.planner import across_nodes

    caps = gpus.capabilities(hardware.gfx)
    options = synthesize.runnable(source.model, hardware, source.checkpoint, checkpoint_precision_of(source))[0]
    precisions = [(o.precision, o.checkpoint) for o in options if precision_allowed(settings.precision, o.precision)]
    engine = settings.engine if settings.engine != "auto" else next(
        (e for e in ENGINE_PREFERENCE if caps.runs_engine(e)), "vllm")
    numbers = across_nodes.nothing_fits(source.model, hardware, precisions, engine) if precisions else None
    head = numbers or (f"no recipe for {source.model.model_id} can run on the group of {hardware.group.nodes} "
                       f"nodes × {_describe_hw(hardware)}")
    return AimError(head + ":\n" + _summarize(rejected),
                    hint="a group with more nodes or GPUs with more memory, a lower precision (AIM_PRECISION), or a "
                         "shorter context (AIM_ENGINE_ARGS='{\"--max-context-len\": \"8192\"}')")


def recipes_of(catalog: Any, source: ModelSource) -> list[Recipe]:
    """The catalog's recipes for the model and its declared variants (none outside the catalog)."""
    if not source.in_catalog:
        return []
    return list(catalog.recipes_for(source.model))


def select(settings: "Settings", hardware: "Hardware", catalog: Any, inventory: "Inventory | None" = None) -> Plan:
    """The plan for AIM_MODEL_ID on `hardware` with the engines of `inventory` (see the module
    docstring for every rule)."""
    _check_engine_args(settings)
    _check_engine_installed(settings, inventory)
    pinned = _pinned(settings, catalog, inventory)
    model_id = settings.model_id
    if model_id is None and pinned is not None:
        model_id = pinned.model_id
    source = resolve(settings, catalog, model_id)
    if pinned is not None and source.in_catalog and pinned.model_id != source.model.model_id:
        raise AimError(f"conflicting overrides: AIM_RECIPE_ID={pinned.recipe_id} serves {pinned.model_id}, "
                       f"but AIM_MODEL_ID={settings.model_id} is {source.model.model_id}",
                       hint="drop AIM_RECIPE_ID, or set AIM_MODEL_ID to the recipe's model")
    if pinned is not None and not source.in_catalog:
        raise AimError(f"conflicting overrides: AIM_RECIPE_ID={pinned.recipe_id} is for {pinned.model_id}, "
                       f"but AIM_MODEL_ID={source.requested} is not that catalog model",
                       hint="drop AIM_RECIPE_ID, or set AIM_MODEL_ID to the recipe's model")
    return choose(source, settings, hardware, recipes_of(catalog, source), pinned, inventory)
