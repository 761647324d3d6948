"""The environment contract: every AIM_* variable, parsed once, typed and frozen.

This is the only module that reads `os.environ` for agent settings. Every other module takes a
`Settings`. The table `VARIABLES` is the single source of truth for names, defaults and help
text: the README, the Helm chart and the manifests are checked against it by tests.

A bad value is never silently replaced by a default: `Settings.from_env` collects every problem
and raises one `SettingsError` naming each variable, its value and what is allowed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aim_engine.errors import SettingsError, shown
from aim_engine.redact import MASK, is_secret_name, remember, remember_secrets_in

PRECISIONS = ("auto", "fp16", "bf16", "fp8", "int8", "int4")
ENGINES = ("auto", "vllm", "sglang")
METRICS = ("latency", "throughput")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
CACHE_VERIFY = ("size", "full")
MULTINODE_BACKENDS = ("auto", "native", "ray")

DEFAULT_CACHE_PATH = "/workspace/model-cache"
DEFAULT_PORT = 8000
MAX_LOCK_TIMEOUT = 86400   # a day: 0 = try the cache lock once without waiting
DEFAULT_HEALTH_PORT = 8001

# Limits (docs/inputs.md). 64 GPUs: 8 MI300-class packages in CPX mode are 64 devices, the most
# one node shows. A file-name part is at most 255 bytes on every Linux filesystem.
MAX_GPUS = 64
MAX_FAIL_GRACE = 3600
NAME_PART = 255
MAX_PATH = 4096
MAX_PATH_LIST = 16384
MAX_ENGINE_ARGS = 65536
MAX_DIGITS = 12            # longer digit strings are out of every range: never converted
MAX_NODES = 64             # nodes in one serving group (docs/multinode.md)
MAX_PEER_TIMEOUT = 86400
HOST_NAME = 253            # a DNS name is at most 253 characters
IFNAMSIZ = 15              # Linux interface names: at most 15 characters

# Variables other controllers set, read as they set them (docs/multinode.md, "Topology"): the
# topology resolver (hardware/group.py) parses them; they are not AIM_* settings.
FOREIGN_TOPOLOGY = ("LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX",          # LeaderWorkerSet
                    "HEAD_SVC", "RAY_NODE_COUNT", "TENSOR_PARALLEL_SIZE", "PIPELINE_PARALLEL_SIZE",  # KServe
                    "POD_IP", "POD_NAMESPACE")                                        # the downward API

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Bounds:
    """The range of a count, size or duration setting. Numbers are plain ASCII digits (`8000`,
    `2.5` for a duration): no sign, no `_`, no exponent, no `nan`/`inf`, no other scripts' digits,
    so what the agent reads is exactly what a person reads."""

    low: int | float
    high: int | float
    whole: bool = True          # a whole number (count, port), else a decimal (seconds)
    unit: str = ""

    def describe(self) -> str:
        """The allowed values as the error message and the README say them."""
        kind = "a whole number" if self.whole else "a number"
        unit = f" {self.unit}" if self.unit else ""
        return f"{kind} from {self.low:g} to {self.high:g}{unit}"


@dataclass(frozen=True)
class TextRule:
    """Limits of a text setting: length, and whether it may start with `-` (a name that is
    rendered as a flag's value must not look like a flag)."""

    max_length: int
    no_leading_dash: bool = False
    no_spaces: bool = False
    max_part: int | None = None       # at most this many characters between '/' (file-name limit)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default (as the user would write it) and meaning,
    and for numbers and names the limits the value must keep (docs/inputs.md lists them)."""

    name: str
    default: str | None
    help: str
    bounds: Bounds | None = None
    text: TextRule | None = None


VARIABLES: tuple[Variable, ...] = (
    Variable("AIM_MODEL_ID", None, "What to serve: Hugging Face id, catalog alias, or local directory.",
             text=TextRule(4096, max_part=NAME_PART)),
    Variable("AIM_MODEL_REVISION", "main", "Branch, tag or commit of the model; resolved once to a commit.",
             text=TextRule(NAME_PART, no_leading_dash=True, no_spaces=True)),
    Variable("AIM_RECIPE_ID", None, "Force one recipe by id (skips automatic selection).",
             text=TextRule(NAME_PART, no_spaces=True)),
    Variable("AIM_PRECISION", "auto", "auto, fp16, bf16, fp8, int8 or int4."),
    Variable("AIM_ENGINE", "auto", "auto, vllm or sglang (auto prefers vLLM)."),
    Variable("AIM_METRIC", "latency", "latency (largest tensor-parallel size) or throughput (data-parallel replicas)."),
    Variable("AIM_GPU_MODEL", None, "Override the detected GPU model, e.g. MI300X.", text=TextRule(64)),
    Variable("AIM_GPU_COUNT", None, "Override the number of GPUs to use (may only shrink what is visible).",
             bounds=Bounds(0, MAX_GPUS, unit="GPUs")),
    Variable("AIM_ENGINE_ARGS", None, "JSON object merged over the recipe's args; null removes a flag.",
             text=TextRule(MAX_ENGINE_ARGS)),
    Variable("AIM_CACHE_PATH", DEFAULT_CACHE_PATH, "Persistent model cache root; HF_HOME is derived from it.",
             text=TextRule(MAX_PATH, max_part=NAME_PART)),
    Variable("AIM_OFFLINE", "false", "Never touch the network; serve only from a complete cache."),
    Variable("AIM_LOCK_TIMEOUT", "3600", "Seconds to wait for another process's cache warm-up (0-86400; 0: do not wait).",
             bounds=Bounds(0, MAX_LOCK_TIMEOUT, whole=False, unit="seconds")),
    Variable("AIM_CACHE_VERIFY", "size", "size (sizes match the listing) or full (sha256 of LFS files)."),
    Variable("AIM_PORT", str(DEFAULT_PORT), "Port of the engine's OpenAI-compatible API.", bounds=Bounds(1, 65535)),
    Variable("AIM_HEALTH_PORT", str(DEFAULT_HEALTH_PORT), "Port of the agent's health and status probes.",
             bounds=Bounds(1, 65535)),
    Variable("AIM_RECIPES_DIR", None, "Extra recipe directories (os.pathsep-separated), searched with the shipped ones.",
             text=TextRule(MAX_PATH_LIST, max_part=NAME_PART)),
    Variable("AIM_MODELS_DIR", None, "Extra model directories (os.pathsep-separated), searched with the shipped ones.",
             text=TextRule(MAX_PATH_LIST, max_part=NAME_PART)),
    Variable("AIM_SERVED_MODEL_NAME", None, "Name clients use in requests (default: the model id).",
             text=TextRule(NAME_PART, no_leading_dash=True)),
    Variable("AIM_TRUST_REMOTE_CODE", "false",
             "Allow --trust-remote-code for a model outside the catalog whose config.json has auto_map "
             "(runs that repository's code in the container)."),
    Variable("AIM_LOG_LEVEL", "info", "debug, info, warning or error."),
    Variable("AIM_LOG_FORMAT", "auto", "json, console, or auto (json when stdout is not a terminal)."),
    Variable("AIM_DEBUG", "false", "Debug logging (the same as AIM_LOG_LEVEL=debug); the engine is unaffected."),
    Variable("AIM_SYSFS_ROOT", "/", "Root the sysfs GPU probe reads (tests point it at fixture trees).",
             text=TextRule(MAX_PATH, max_part=NAME_PART)),
    Variable("AIM_ENGINE_METRICS", "true", "Turn the engine's own Prometheus /metrics on (SGLang's --enable-metrics; vLLM's are always on)."),
    Variable("AIM_ENGINE_FLAGS_DIR", None, "Where `aim-engine engines refresh` writes the installed engines' flag lists and boot reads them first (default: <agent's Python prefix>/share/aim-engine/engine-flags).",
             text=TextRule(MAX_PATH, max_part=NAME_PART)),
    Variable("AIM_IMAGE_FLAVOUR", None, "Set by the image build: which image flavour this is (rocm-vllm, rocm-sglang, cpu); named when an engine is missing.",
             text=TextRule(64, no_leading_dash=True, no_spaces=True)),
    Variable("AIM_FAIL_GRACE", "5", "Seconds a failed boot keeps its probes (/status) answering before it exits non-zero.",
             bounds=Bounds(0, MAX_FAIL_GRACE, whole=False, unit="seconds")),
    Variable("AIM_NODE_COUNT", None, "Nodes in the serving group (unset: from LeaderWorkerSet or KServe, else 1).",
             bounds=Bounds(1, MAX_NODES, unit="nodes")),
    Variable("AIM_NODE_RANK", None, "This node's rank in the group, 0 = the leader (unset: from LeaderWorkerSet or KServe, else 0).",
             bounds=Bounds(0, MAX_NODES - 1)),
    Variable("AIM_LEADER_ADDRESS", None, "Host name or IP of rank 0, as every rank reaches it (unset: LWS_LEADER_ADDRESS or KServe's HEAD_SVC).",
             text=TextRule(HOST_NAME, no_leading_dash=True, no_spaces=True)),
    Variable("AIM_DIST_PORT", "29500", "The leader's rendezvous port (vLLM --master-port, SGLang --dist-init-addr).",
             bounds=Bounds(1, 65535)),
    Variable("AIM_MULTINODE_BACKEND", "auto", "auto, native (the engine's own multi-node runtime) or ray."),
    Variable("AIM_PEER_TIMEOUT", "900", "Seconds a boot waits for its leader, or for its workers to join.",
             bounds=Bounds(0, MAX_PEER_TIMEOUT, whole=False, unit="seconds")),
    Variable("AIM_NODE_ADDRESS", None, "This node's address as its peers reach it (default: POD_IP, else the source address of the route to the leader).",
             text=TextRule(HOST_NAME, no_leading_dash=True, no_spaces=True)),
    Variable("AIM_NETWORK_INTERFACE", None, "Network interface for the engines' socket traffic (default: the interface of the route to the leader).",
             text=TextRule(IFNAMSIZ, no_leading_dash=True, no_spaces=True)),
    Variable("AIM_LEADER_HEALTH_PORT", None, "The leader's probe port, where workers join (default: AIM_HEALTH_PORT, the same on every rank).",
             bounds=Bounds(1, 65535)),
    Variable("HF_TOKEN", None, "Hugging Face token for gated models; never logged.", text=TextRule(1024, no_spaces=True)),
    Variable("HF_ENDPOINT", None, "Hugging Face hub (or mirror) URL; default https://huggingface.co.",
             text=TextRule(2048, no_spaces=True)),
)


_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class _Reader:
    """Parses variables from one environment mapping, collecting every problem."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self._variables = {v.name: v for v in VARIABLES}

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            variable = self._variables.get(name)
            return variable.default if variable else None
        return value.strip()

    def text(self, name: str) -> str | None:
        """A text value within its `TextRule`: no control characters, not too long; None (and
        a problem) otherwise."""
        value = self.raw(name)
        rule = self._variables[name].text if name in self._variables else None
        if value is None or rule is None:
            return value
        why = None
        if len(value) > rule.max_length:
            why = f"is too long ({len(value)} characters; at most {rule.max_length})"
        elif rule.max_part and any(len(part.encode("utf-8", "replace")) > rule.max_part
                                   for part in re.split(r"[/" + re.escape(os.pathsep) + r"]", value)):
            why = f"has a part between '/' longer than {rule.max_part} bytes (a file name cannot be longer)"
        elif _CONTROL.search(value):
            why = "contains control characters"
        elif rule.no_leading_dash and value.startswith("-"):
            why = "starts with '-' (it would read as a command-line flag)"
        elif rule.no_spaces and any(c.isspace() for c in value):
            why = "contains white space"
        if why:
            self.problems.append(f"{name}={MASK if is_secret_name(name) else shown(value)} {why}")
            return None
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = (self.raw(name) or "").lower()
        if value not in allowed:
            self.problems.append(f"{name}={shown(self.raw(name))} is not one of: {', '.join(allowed)}")
            return allowed[0]
        return value

    def flag(self, name: str) -> bool:
        value = (self.raw(name) or "").lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self.problems.append(f"{name}={shown(self.raw(name))} is not a boolean (use true/false, 1/0, yes/no)")
        return False

    def number(self, name: str) -> Any:
        """The variable's value within its `Bounds` (the one bounded-number reader: every
        count, port and duration goes through it); None when unset or bad (with a problem)."""
        bounds = self._variables[name].bounds
        assert bounds is not None, f"{name} has no bounds in VARIABLES"
        value = self.raw(name)
        if value is None:
            return None
        allowed = f"allowed: {bounds.describe()}, in plain digits"
        pattern = _WHOLE if bounds.whole else _DECIMAL
        if not pattern.fullmatch(value):
            kind = "a whole number" if bounds.whole else "a number"
            self.problems.append(f"{name}={shown(value)} is not {kind} written in plain digits ({allowed})")
            return None
        if len(value.partition(".")[0]) > MAX_DIGITS:
            self.problems.append(f"{name}={shown(value)} is out of range ({allowed})")
            return None
        number = int(value) if bounds.whole else float(value)
        if not bounds.low <= number <= bounds.high:
            self.problems.append(f"{name}={shown(value)} is out of range ({allowed})")
            return None
        return number

    def json_object(self, name: str) -> dict[str, Any]:
        value = self.text(name)
        if value is None:
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.problems.append(f"{name} is not valid JSON ({exc.msg} at column {exc.colno}); expected an object like "
                                 '{"--max-model-len": "8192", "--enforce-eager": true}')
            return {}
        except RecursionError:
            self.problems.append(f"{name} nests too deeply; expected an object of flag -> value")
            return {}
        remember_secrets_in(parsed)
        if not isinstance(parsed, dict):
            self.problems.append(f"{name} must be a JSON object of flag -> value, got {type(parsed).__name__}")
            return {}
        bad = [k for k in parsed if not (isinstance(k, str) and k.startswith("-"))]
        if bad:
            self.problems.append(f"{name} keys must be flags starting with '-', got "
                                 + ", ".join(shown(k) for k in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
            return {}
        return parsed

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not re.match(r"https?://[^/\s]", value, re.IGNORECASE):
            self.problems.append(f"{name}={shown(value)} is not an http:// or https:// URL")
            return None
        return value

    def paths(self, name: str) -> tuple[Path, ...]:
        value = self.text(name)
        if not value:
            return ()
        return tuple(Path(p) for p in value.split(os.pathsep) if p)


def _path_or_none(text: str | None) -> Path | None:
    return Path(text) if text else None


@dataclass(frozen=True)
class Settings:
    """Every agent setting, typed. Build with `Settings.from_env()`; never mutate."""

    model_id: str | None = None
    model_revision: str = "main"
    recipe_id: str | None = None
    precision: str = "auto"
    engine: str = "auto"
    metric: str = "latency"
    gpu_model: str | None = None
    gpu_count: int | None = None
    engine_args: dict[str, Any] = field(default_factory=dict)
    cache_path: Path = Path(DEFAULT_CACHE_PATH)
    offline: bool = False
    lock_timeout: float = 3600.0
    cache_verify: str = "size"
    port: int = DEFAULT_PORT
    health_port: int = DEFAULT_HEALTH_PORT
    recipes_dirs: tuple[Path, ...] = ()
    models_dirs: tuple[Path, ...] = ()
    served_model_name: str | None = None
    trust_remote_code: bool = False
    log_level: str = "info"
    log_format: str = "auto"
    debug: bool = False
    sysfs_root: Path = Path("/")
    fail_grace: float = 5.0
    engine_metrics: bool = True
    image_flavour: str | None = None
    flags_dir: Path | None = None
    hf_token: str | None = field(default=None, repr=False)
    hf_endpoint: str | None = None
    # Multi-node (docs/multinode.md): validated together by hardware.group.resolve().
    node_count: int | None = None
    node_rank: int | None = None
    leader_address: str | None = None
    dist_port: int = 29500
    multinode_backend: str = "auto"
    peer_timeout: float = 900.0
    node_address: str | None = None
    network_interface: str | None = None
    leader_health_port: int | None = None
    topology_env: dict[str, str] = field(default_factory=dict)   # FOREIGN_TOPOLOGY variables that are set

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Parse `environ` (default: `os.environ`); raise `SettingsError` listing every bad value."""
        r = _Reader(os.environ if environ is None else environ)
        token = r.text("HF_TOKEN") or r.environ.get("HUGGING_FACE_HUB_TOKEN") or None
        remember(token)
        remember_secrets_in(r.raw("HF_ENDPOINT") or "")     # a password or ?token= in the mirror's URL
        settings = cls(
            model_id=r.text("AIM_MODEL_ID"),
            model_revision=r.text("AIM_MODEL_REVISION") or "main",
            recipe_id=r.text("AIM_RECIPE_ID"),
            precision=r.choice("AIM_PRECISION", PRECISIONS),
            engine=r.choice("AIM_ENGINE", ENGINES),
            metric=r.choice("AIM_METRIC", METRICS),
            gpu_model=r.text("AIM_GPU_MODEL"),
            gpu_count=r.number("AIM_GPU_COUNT"),
            engine_args=r.json_object("AIM_ENGINE_ARGS"),
            cache_path=Path(r.text("AIM_CACHE_PATH") or DEFAULT_CACHE_PATH),
            offline=r.flag("AIM_OFFLINE"),
            lock_timeout=r.number("AIM_LOCK_TIMEOUT") or 0.0,
            cache_verify=r.choice("AIM_CACHE_VERIFY", CACHE_VERIFY),
            port=r.number("AIM_PORT") or DEFAULT_PORT,
            health_port=r.number("AIM_HEALTH_PORT") or DEFAULT_HEALTH_PORT,
            recipes_dirs=r.paths("AIM_RECIPES_DIR"),
            models_dirs=r.paths("AIM_MODELS_DIR"),
            served_model_name=r.text("AIM_SERVED_MODEL_NAME"),
            trust_remote_code=r.flag("AIM_TRUST_REMOTE_CODE"),
            log_level=r.choice("AIM_LOG_LEVEL", LOG_LEVELS),
            log_format=r.choice("AIM_LOG_FORMAT", LOG_FORMATS),
            debug=r.flag("AIM_DEBUG"),
            sysfs_root=Path(r.text("AIM_SYSFS_ROOT") or "/"),
            fail_grace=r.number("AIM_FAIL_GRACE"),
            engine_metrics=r.flag("AIM_ENGINE_METRICS"),
            image_flavour=r.text("AIM_IMAGE_FLAVOUR"),
            flags_dir=_path_or_none(r.text("AIM_ENGINE_FLAGS_DIR")),
            hf_token=token,
            hf_endpoint=r.url("HF_ENDPOINT"),
            node_count=r.number("AIM_NODE_COUNT"),
            node_rank=r.number("AIM_NODE_RANK"),
            leader_address=r.text("AIM_LEADER_ADDRESS"),
            dist_port=r.number("AIM_DIST_PORT") or 29500,
            multinode_backend=r.choice("AIM_MULTINODE_BACKEND", MULTINODE_BACKENDS),
            peer_timeout=r.number("AIM_PEER_TIMEOUT") or 0.0,
            node_address=r.text("AIM_NODE_ADDRESS"),
            network_interface=r.text("AIM_NETWORK_INTERFACE"),
            leader_health_port=r.number("AIM_LEADER_HEALTH_PORT"),
            topology_env={name: r.environ[name].strip()[:MAX_PATH] for name in FOREIGN_TOPOLOGY
                          if (r.environ.get(name) or "").strip()},
        )
        if settings.port == settings.health_port and not r.problems:
            r.problems.append(f"AIM_HEALTH_PORT={settings.health_port} must differ from AIM_PORT={settings.port}")
        if r.problems:
            raise SettingsError(r.problems)
        return settings

    @property
    def engine_flags_dir(self) -> Path:
        """Where refreshed flag lists live: AIM_ENGINE_FLAGS_DIR, else beside the agent's own
        install (`<sys.prefix>/share/aim-engine/engine-flags`): written by root at image build,
        readable by the runtime user, and writable by whoever installed the agent in a venv."""
        if self.flags_dir is not None:
            return self.flags_dir
        import sys

        return Path(sys.prefix) / "share" / "aim-engine" / "engine-flags"

    @property
    def hf_home(self) -> Path:
        """HF_HOME for the agent and the engine: always inside the cache, so both read one cache."""
        return self.cache_path / "huggingface"

    @property
    def hub_cache(self) -> Path:
        """The huggingface_hub cache directory (HF_HUB_CACHE) under `hf_home`."""
        return self.hf_home / "hub"

    def public_dict(self) -> dict[str, Any]:
        """A JSON-able view with secrets masked, for `/status` and `plan --json`."""
        from aim_engine.redact import MASK, is_secret_name

        from aim_engine.redact import mask

        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if is_secret_name(name):
                value = MASK if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            out[name] = value
        return mask(out)     # the one masking pass: secret flags in engine_args, URL credentials
