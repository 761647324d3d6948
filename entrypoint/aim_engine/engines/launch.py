"""The adapter both engines share: a plan in, a `Launch` out. The engines differ only in data
(`EngineSpec` in vllm.py / sglang.py, `canonical.yaml`, `flags/<engine>.json`, `rocm_env.yaml`).

How the engine executable is found: `argv[0]` (`vllm`, or `python3` for `python3 -m
sglang.launch_server`) is looked up on the PATH of the environment the engine will get, i.e. the
agent's PATH. In the container that is the image's Python environment; tests and `make run` put
an engine virtualenv's `bin/` first on PATH. When it is not found (a dry-run `plan` on a machine
without the engine) the bare name is kept and `execvpe` reports it at boot.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any, Mapping

from aim_engine.engines import environment
from aim_engine.engines.base import ArgRenderer, Launch, normalize_key
from aim_engine.errors import AimError

LOOPBACK = "127.0.0.1"
BIND_ALL = "0.0.0.0"


@dataclass(frozen=True)
class EngineSpec:
    """The data that makes an engine: its command and its probe paths."""

    name: str
    command: tuple[str, ...]        # argv before the engine's own arguments
    health_path: str = "/health"
    models_path: str = "/v1/models"


def _origin(plan: Any) -> str:
    config = plan.config
    where = f" from {plan.recipe.source}" if getattr(plan.recipe, "source", None) else ""
    return f"recipe {plan.recipe.recipe_id} ({config.engine}_serve {config.name}{where})"


def _gfx(plan: Any, gfx: str | None) -> str | None:
    """The gfx target the plan runs on: given, or the recipe's GPU (a fallback recipe is, by
    the selection rules, of the same gfx family as the detected GPU)."""
    if gfx or getattr(plan, "target", "gpu") == "cpu":
        return gfx
    hardware = str(plan.recipe.hardware)
    if hardware.lower().startswith("gfx"):
        return hardware.lower()
    from aim_engine.hardware import gpus

    found = gpus.find(hardware)
    return found.gfx if found else None


def _pre_quantized(plan: Any) -> bool:
    """True when the checkpoint carries its own quantization (a quantized variant)."""
    finder = getattr(plan.model, "checkpoint", None)
    variant = finder(plan.recipe.huggingface_id) if callable(finder) else None
    return bool(variant is not None and variant.quantization)


def resolve_command(command: tuple[str, ...], env: Mapping[str, str]) -> list[str]:
    """`command` with argv[0] resolved on the engine environment's PATH (bare when not found)."""
    found = shutil.which(command[0], path=env.get("PATH", os.defpath))
    return [found or command[0], *command[1:]]


def plan_layer(plan: Any) -> dict[str, Any]:
    """The values the planner decided, as canonical args: they replace the recipe's. Tensor,
    pipeline and data parallel are group-wide on a multi-node plan (SGLang's --tp-size is the
    total over the nodes; vLLM's --tensor-parallel-size x --pipeline-parallel-size covers them)."""
    layer: dict[str, Any] = {"--tensor-parallel-size": str(plan.tensor_parallel)}
    pipeline = int(getattr(plan, "pipeline_parallel", 1) or 1)
    if pipeline > 1 or "--pipeline-parallel-size" in plan.config.args:
        layer["--pipeline-parallel-size"] = str(pipeline)
    if plan.data_parallel > 1 or "--data-parallel-size" in plan.config.args:
        layer["--data-parallel-size"] = str(plan.data_parallel)
    if getattr(plan, "context", None):
        layer["--max-context-len"] = str(plan.context)
    if getattr(plan, "batch", None):
        layer["--max-batch-size"] = str(plan.batch)
    return layer


def render_args(
    engine: str,
    recipe_args: Mapping[str, Any],
    *,
    model: str,
    served_model_name: str,
    port: int,
    plan_args: Mapping[str, Any] | None = None,
    target: str = "gpu",
    overrides: Mapping[str, Any] | None = None,
    origin: str = "recipe",
    online_quantization: bool = True,
    engine_metrics: bool = True,
    flag_list: Any = None,
    group_args: Mapping[str, Any] | None = None,
    group_reserved: Mapping[str, str] | None = None,
) -> ArgRenderer:
    """The pure core of rendering: layered args -> an `ArgRenderer` holding the result.

    Layers, each replacing the previous: recipe < plan < target < engine metrics (unless
    `engine_metrics` is off: AIM_ENGINE_METRICS) < a group's rank args (multinode.yaml) <
    agent-owned < AIM_ENGINE_ARGS.
    `flag_list`: the `flags.FlagChoice` argv is checked against (default: the newest packaged list).
    `group_reserved`: on a group, the flags AIM_ENGINE_ARGS may not set either (-> the setting).
    """
    r = ArgRenderer(engine, flag_list.flags, label=flag_list.label) if flag_list is not None else ArgRenderer(engine)
    r.online_quantization = online_quantization
    reserved = set(r.table.reserved)
    r.apply(recipe_args, origin, skip=reserved)
    r.apply(plan_args or {}, "plan")
    r.apply(r.table.target_args(target, engine), f"{target} target defaults")
    if engine_metrics:
        r.apply(r.table.metrics_args(engine), "AIM_ENGINE_METRICS")
    if group_args:
        r.apply(group_args, "multi-node group")
    r.apply({"--model": model, "--host": BIND_ALL, "--port": str(port),
             "--served-model-name": served_model_name}, "agent")
    overrides = dict(overrides or {})
    owned = {**r.table.reserved, **dict(group_reserved or {})}
    # A group's flags are matched by destination, so an alias (vLLM's `-n` for --nnodes) is caught too.
    group_dests = {info.dest: setting for flag, setting in (group_reserved or {}).items()
                   if (info := r.flags.get(flag)) is not None}
    for key in overrides:
        normalized = normalize_key(key)
        info = r.flags.get(normalized)
        setting = owned.get(normalized) or (group_dests.get(info.dest) if info is not None else None)
        if setting is not None:
            raise AimError(f"AIM_ENGINE_ARGS may not set {key}: the agent owns it"
                           + (" on a multi-node group" if normalized not in reserved else ""),
                           hint=f"set {setting} instead")
    r.apply(overrides, "AIM_ENGINE_ARGS", record=True)
    return r


@dataclass(frozen=True)
class CommandAdapter:
    """An engine started as a command line; `render` is the whole adapter."""

    spec: EngineSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def flag_list(self, plan: Any, settings: Any) -> Any:
        """The flag list argv is checked against: the installed version's (engines/flags.py)."""
        from aim_engine.engines import flags

        found = getattr(plan, "engine_found", None)
        return flags.choose(self.name, found is not None, getattr(found, "version", None),
                            getattr(settings, "engine_flags_dir", None))

    def render(self, plan: Any, settings: Any, model_path: str, cache_warm: bool, rank: int | None = None, *,
               base_env: Mapping[str, str] | None = None, gfx: str | None = None) -> Launch:
        """The Launch of `plan` on rank `rank` of its group (None: this node's own rank; one
        node: rank 0, exactly as before groups existed)."""
        if plan.engine != self.name:
            raise ValueError(f"{self.name} adapter given a {plan.engine} plan")
        target = getattr(plan, "target", "gpu")
        flag_list = self.flag_list(plan, settings)
        group = getattr(plan, "group", None)
        part = None
        if group is not None and group.is_multi_node:
            from aim_engine.engines import multinode

            rank = group.rank if rank is None else rank
            backend = multinode.choose_backend(self.name, flag_list.flags, group,
                                               multinode.requested_backend(settings), flag_list.label)
            part = multinode.rank_plan(plan, group, rank, backend)
        elif rank not in (None, 0):
            raise AimError(f"rank {rank} asked of a single-node plan", hint="a plan of one node has rank 0 only")
        rendered = render_args(
            self.name,
            plan.config.args,
            model=model_path,
            served_model_name=plan.served_model_name,
            port=settings.port,
            plan_args=plan_layer(plan),
            target=target,
            overrides=settings.engine_args,
            origin=_origin(plan),
            online_quantization=not _pre_quantized(plan),
            engine_metrics=getattr(settings, "engine_metrics", True),
            flag_list=flag_list,
            group_args=part.args if part is not None else None,
            group_reserved=_group_reserved() if part is not None else None,
        )
        out = rendered.render()
        base = dict(os.environ if base_env is None else base_env)
        network_env = None
        if part is not None:
            node_address = group.node_address if rank == group.rank else None
            network_env = environment.network(environment.NetworkContext(
                engine=self.name, backend=part.backend.name, target=target, node_address=node_address,
                interface=group.interface))
        engine_env = environment.build(
            base,
            environment.EnvContext(target=target, engine=self.name, gfx=_gfx(plan, gfx),
                                   tensor_parallel=int(plan.tensor_parallel)),
            hf_home=str(settings.hf_home),
            hub_cache=str(settings.hub_cache),
            cache_warm=cache_warm,
            hf_token=settings.hf_token,
            recipe_env=plan.config.env,
            visible_devices=getattr(plan, "visible_devices", None) if target == "gpu" else None,
            network_env=network_env,
        )
        env = dict(engine_env.env)
        changes = dict(engine_env.changes)
        for name, value in rendered.secret_env.items():     # secrets named in args, moved off argv
            env[name] = changes[name] = value
        url = f"http://{LOOPBACK}:{settings.port}"
        # The engine's own /metrics: on unless its enabling switch is not in the final args
        # (AIM_ENGINE_METRICS=false, or AIM_ENGINE_ARGS removed it).
        metrics_path = rendered.table.metrics_path(self.name)
        metrics_on = all(flag in out.args for flag in rendered.table.metrics_args(self.name))
        metrics_url = url + metrics_path if metrics_on and metrics_path else None
        if part is None:
            command = resolve_command(self.spec.command, env)
            return Launch(
                engine=self.name,
                argv=[*command, *out.args],
                env=env,
                health_url=url + self.spec.health_path,
                models_url=url + self.spec.models_path,
                served_model_name=plan.served_model_name,
                overrides_applied=out.overrides_applied,
                env_changes=changes,
                env_removed=engine_env.removed,
                command_len=len(command),
                metrics_url=metrics_url,
                flag_list=flag_list,
            )
        # A rank of a group: the engine (its args checked above on every rank, a Ray worker's
        # too, so a bad flag stops every node before anything starts), or a Ray worker's `ray start`.
        argv = ([*resolve_command(self.spec.command, env), *out.args] if part.runs_engine
                else resolve_command(part.command, env))
        command_len = len(argv) - len(out.args) if part.runs_engine else len(argv)
        return Launch(
            engine=self.name,
            argv=argv,
            env=env,
            health_url=url + self.spec.health_path if part.serves_health else None,
            models_url=url + self.spec.models_path if part.serves_api else None,
            served_model_name=plan.served_model_name,
            overrides_applied=out.overrides_applied,
            env_changes=changes,
            env_removed=engine_env.removed,
            command_len=command_len,
            metrics_url=metrics_url if part.serves_health else None,
            flag_list=flag_list,
            rank=part.rank,
            role=part.role,
            serves_api=part.serves_api,
            prelude=tuple(tuple(resolve_command(c, env)) for c in part.prelude),
            backend=part.backend,
        )


def _group_reserved() -> Mapping[str, str]:
    from aim_engine.engines import multinode

    return multinode.reserved()
