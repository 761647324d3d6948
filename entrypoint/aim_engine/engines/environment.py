"""The engine's environment: the agent's own, plus the cache contract and tuning defaults.

Precedence, strongest first:
1. what the agent owns, always set by it:
   - the cache contract: `HF_HOME`/`HF_HUB_CACHE` point at the cache the agent warmed (a user's
     different `HF_HOME` would make the engine read another cache), and `HF_HUB_OFFLINE=1` once
     that cache is warm (zero network at boot);
   - GPU visibility: the plan's `visible_devices` goes into BOTH `HIP_VISIBLE_DEVICES` and
     `CUDA_VISIBLE_DEVICES` (vLLM refuses to start when they differ). The value indexes the
     ROCR-visible list, so `ROCR_VISIBLE_DEVICES` is left exactly as the user set it (HIP applies
     its list on top of ROCR's; the agent already composed the two when it detected). Without a
     restriction, a user's HIP and CUDA lists that disagree are made to agree on HIP's, the one
     HIP itself (and the agent's detection) follows;
2. the user's environment (anything already set is never overwritten);
3. the recipe config's `env`;
4. on a multi-node group only, the network rows of `network_env.yaml` (this node's address as
   VLLM_HOST_IP / SGLANG_HOST_IP, the interface as GLOO/NCCL_SOCKET_IFNAME);
5. the defaults of `rocm_env.yaml`, chosen by target, gfx, engine and tensor-parallel size.

`HF_TOKEN` (and its legacy name) reach the engine only while the cache is cold; a warm cache
needs no token, and a process that does not hold a secret cannot leak it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@dataclass(frozen=True)
class EnvContext:
    """What the defaults table is keyed on."""

    target: str                 # "gpu" | "cpu"
    engine: str                 # "vllm" | "sglang"
    gfx: str | None
    tensor_parallel: int


@dataclass(frozen=True)
class EngineEnv:
    env: dict[str, str]         # complete, for execve
    changes: dict[str, str]     # what differs from the agent's environment (for `plan`)
    removed: tuple[str, ...]    # variables taken away (tokens once warm)


@lru_cache(maxsize=None)
def _rules() -> tuple[Mapping[str, Any], ...]:
    from aim_engine import yaml_documents

    data = yaml_documents.load(Path(__file__).resolve().parent / "rocm_env.yaml")
    return tuple((data or {}).get("rules") or ())


def _matches(when: Mapping[str, Any], ctx: EnvContext) -> bool:
    checks = {
        "target": lambda v: ctx.target == v,
        "engine": lambda v: ctx.engine == v,
        "gfx": lambda v: ctx.gfx in (v if isinstance(v, list) else [v]),
        "min_tensor_parallel": lambda v: ctx.tensor_parallel >= int(v),
    }
    unknown = set(when) - set(checks)
    if unknown:   # a typo in the data file must not silently apply a rule everywhere
        raise ValueError(f"rocm_env.yaml: unknown `when` key(s) {sorted(unknown)}")
    return all(checks[k](v) for k, v in when.items())


def defaults(ctx: EnvContext, rules: tuple[Mapping[str, Any], ...] | None = None) -> dict[str, str]:
    """The tuning defaults that apply to `ctx` (later rules win)."""
    out: dict[str, str] = {}
    for rule in _rules() if rules is None else rules:
        if _matches(rule.get("when") or {}, ctx):
            out.update({str(k): str(v) for k, v in (rule.get("env") or {}).items()})
    return out


@dataclass(frozen=True)
class NetworkContext:
    """What the network rows of a multi-node group are keyed on, and the values they take."""

    engine: str
    backend: str                    # "native" | "ray"
    target: str
    node_address: str | None        # this node's address as its peers reach it (None: not known)
    interface: str | None           # the interface towards the leader (None: not known)


@lru_cache(maxsize=None)
def _network_rows() -> tuple[Mapping[str, Any], ...]:
    from aim_engine import yaml_documents

    data = yaml_documents.load(Path(__file__).resolve().parent / "network_env.yaml")
    return tuple((data or {}).get("variables") or ())


NETWORK_WHEN = ("engine", "backend", "target")
NETWORK_FROM = ("node_address", "interface")


def network(ctx: NetworkContext, rows: tuple[Mapping[str, Any], ...] | None = None) -> dict[str, str]:
    """The network variables of `network_env.yaml` that apply to `ctx` (pure; later rows win).
    A row whose value is not known is left out, never set empty."""
    out: dict[str, str] = {}
    for row in _network_rows() if rows is None else rows:
        when = row.get("when") or {}
        unknown = set(when) - set(NETWORK_WHEN)
        source = row.get("from")
        if unknown or (source is not None and source not in NETWORK_FROM):
            raise ValueError(f"network_env.yaml: row {row.get('name')!r}: unknown `when` key(s) {sorted(unknown)} "
                             f"or `from` {source!r} (allowed: {', '.join(NETWORK_WHEN)}; {', '.join(NETWORK_FROM)})")
        if any(getattr(ctx, key) != value for key, value in when.items()):
            continue
        value = getattr(ctx, source) if source is not None else row.get("value")
        if value is not None and str(value) != "":
            out[str(row["name"])] = str(value)
    return out


def visibility(base: Mapping[str, str], visible_devices: str | None) -> dict[str, str]:
    """The HIP/CUDA_VISIBLE_DEVICES the engine must get on top of `base` (pure; empty: none).
    The disagreement rule is detection's own (`hardware.visibility.conflict`), so the engine
    follows the list the agent planned with."""
    from aim_engine.hardware.visibility import CUDA, HIP, conflict

    if visible_devices is not None:
        return {HIP: visible_devices, CUDA: visible_devices}
    differ = conflict(base)
    return {CUDA: differ[0]} if differ else {}


def build(
    base: Mapping[str, str],
    ctx: EnvContext,
    *,
    hf_home: str,
    hub_cache: str,
    cache_warm: bool,
    hf_token: str | None,
    recipe_env: Mapping[str, str] | None = None,
    rules: tuple[Mapping[str, Any], ...] | None = None,
    visible_devices: str | None = None,
    network_env: Mapping[str, str] | None = None,
) -> EngineEnv:
    """Compose the engine environment from the agent's `base` environment (pure).
    `visible_devices`: the plan's HIP_VISIBLE_DEVICES value (None: the engine sees all);
    `network_env`: a multi-node group's network variables (`network()`), defaults like the rest."""
    env = dict(base)
    for name, value in {**defaults(ctx, rules), **dict(network_env or {}), **dict(recipe_env or {})}.items():
        env.setdefault(name, value)
    env.update(visibility(base, visible_devices))
    env["HF_HOME"] = hf_home
    env["HF_HUB_CACHE"] = hub_cache
    removed: list[str] = []
    if cache_warm:
        env["HF_HUB_OFFLINE"] = "1"
        for name in TOKEN_VARIABLES:
            if env.pop(name, None) is not None:
                removed.append(name)
    elif hf_token:
        env["HF_TOKEN"] = hf_token
    changes = {k: v for k, v in env.items() if base.get(k) != v}
    return EngineEnv(env=env, changes=changes, removed=tuple(removed))
