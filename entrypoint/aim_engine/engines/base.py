"""What an engine adapter produces (`Launch`), what it is (`Adapter`), and the shared, pure core
that turns recipe args into real flags.

Both engines share one algorithm, driven by data (`canonical.yaml` for the translation and
`flags/<engine>.json` for the exact flags the real parser accepts):

1. translate each recipe arg (canonical or engine-native) into the engine's flag, keyed by the
   argparse *destination* so aliases (`--tp-size`/`--tensor-parallel-size`) and negations
   (`--no-enforce-eager`) collide as the real parser would;
2. layer, each replacing what came before: recipe args < plan values (tensor/data parallel,
   context, batch) < target additions (vLLM CPU) < agent-owned flags (host, port, served name,
   model) < `AIM_ENGINE_ARGS` (null removes);
3. validate every flag against the exact flag list (argparse would silently accept a prefix typo
   as another flag) and its choices, and every switch value;
4. emit argv: `true` switches bare, `false` switches dropped (or `--no-x` when the engine has an
   explicit negation), lists as repeated values, objects as JSON.

Nothing here imports an engine: the agent never imports vLLM or SGLang.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from aim_engine.engines.flags import EngineFlags, FlagInfo
from aim_engine.engines.flags import load as load_flags
from aim_engine.errors import AimError
from aim_engine.redact import MASK

SWITCH_TRUE = ("true", "1", "yes", "on")
SWITCH_FALSE = ("false", "0", "no", "off", "")


@dataclass(frozen=True)
class Launch:
    """Everything needed to exec the engine, and to explain it.

    - `argv`: the full command (`argv[0]` resolved on the engine environment's PATH when found);
      `argv[command_len:]` are the engine's own arguments (what its parser sees).
    - `env`: the complete environment for `execve` (the agent's, plus the changes in `env_changes`).
    - `overrides_applied`: the AIM_ENGINE_ARGS entries as applied (real flag -> value; None = removed).
    - On a multi-node group (docs/multinode.md, "Rendering"): `health_url` is None where nothing
      answers it (a vLLM headless node, a Ray worker), `models_url` is None on every worker (no
      OpenAI API there); `backend` is the multinode.Backend the group runs on (None: one node).
    """

    engine: str
    argv: list[str]
    env: dict[str, str]
    health_url: str | None
    models_url: str | None
    served_model_name: str
    overrides_applied: dict[str, Any] = field(default_factory=dict)
    env_changes: dict[str, str] = field(default_factory=dict)
    env_removed: tuple[str, ...] = ()
    command_len: int = 1
    metrics_url: str | None = None     # the engine's own Prometheus metrics (None: turned off)
    flag_list: Any = None              # flags.FlagChoice: the list argv was checked against, and why
    # Multi-node (docs/multinode.md): which rank this command is for, and what it does there.
    rank: int = 0
    role: str = "single"               # "single" | "leader" | "worker"
    serves_api: bool = True            # False on workers: no OpenAI API on AIM_PORT (headless)
    prelude: tuple[tuple[str, ...], ...] = ()   # commands run (and waited for) before the exec, e.g. `ray start --head`
    backend: Any = None                # multinode.Backend: "native" | "ray", and why (None: one node)

    @property
    def args(self) -> list[str]:
        """The arguments the engine's parser sees (argv without the command)."""
        return self.argv[self.command_len:]

    def public_dict(self) -> dict[str, Any]:
        """JSON-able view for `plan --json` and `/status`: argv and env changes, secrets masked."""
        from aim_engine.redact import mask, mask_argv, secret_values

        secrets = secret_values(self.env)
        return {
            "engine": self.engine,
            "argv": mask_argv(self.argv, secrets),
            "env": mask(dict(self.env_changes), secrets),
            "env_removed": list(self.env_removed),
            "health_url": self.health_url,
            "models_url": self.models_url,
            "metrics_url": self.metrics_url,
            "served_model_name": self.served_model_name,
            "overrides_applied": mask(dict(self.overrides_applied), secrets),
            "flags": self.flag_list.to_dict() if self.flag_list is not None else None,
            "rank": self.rank,
            "role": self.role,
            "serves_api": self.serves_api,
            "prelude": [mask_argv(list(c), secrets) for c in self.prelude],
            "backend": self.backend.to_dict() if self.backend is not None else None,
        }


class Adapter(Protocol):
    """One inference engine. Implementations are data plus `render` (see vllm.py, sglang.py)."""

    name: str

    def render(self, plan: Any, settings: Any, model_path: str, cache_warm: bool) -> Launch: ...


# ------------------------------------------------------------------ flag data (exact lists)
def primary(info: FlagInfo) -> str:
    """The spelling we emit for a flag (its first option string: `--tp-size`, `--enforce-eager`)."""
    return info.option_strings[0] if info.option_strings else info.flag


# Switch actions that come with an explicit "off" spelling, and how that spelling starts: argparse's
# BooleanOptionalAction (`--x`/`--no-x`, vLLM up to 0.32, SGLang) and vLLM 0.33's EnableDisableAction
# (`--enable-x`/`--disable-x`, or `--x`/`--no-x`).
NEGATABLE: dict[str, tuple[str, ...]] = {"BooleanOptionalAction": ("--no-",),
                                         "EnableDisableAction": ("--no-", "--disable-")}


def negation(info: FlagInfo) -> str | None:
    """The explicit "off" spelling of a switch (`--no-x`, `--disable-x`), else None."""
    prefixes = NEGATABLE.get(info.action)
    if not prefixes:
        return None
    return next((o for o in info.option_strings[1:] if o.startswith(prefixes)), None)


def is_negative(info: FlagInfo, spelling: str) -> bool:
    """True when `spelling` turns the switch `info` OFF: `--no-x`, `--disable-x` for `--enable-x`,
    vLLM 0.33's hidden `--no-enable-x`; but `--no-disable-x` turns it on (two negations)."""
    if info.action not in NEGATABLE or spelling == primary(info):
        return False
    if spelling.startswith("--no-"):
        return not is_negative(info, "--" + spelling[len("--no-"):])
    return spelling.startswith("--disable-") and primary(info).startswith("--enable-")


def multiple(info: FlagInfo) -> bool:
    """True when the flag takes several values (`--served-model-name a b`) or repeats."""
    return info.nargs in ("+", "*") or info.action == "_AppendAction"


# ------------------------------------------------------------------ translation table (canonical.yaml)
@dataclass(frozen=True)
class Table:
    """canonical.yaml, parsed: canonical key -> {engine -> spec}, plus aliases and reserved flags."""

    canonical: Mapping[str, Mapping[str, Mapping[str, Any]]]
    dtype_aliases: Mapping[str, Mapping[str, Any]]
    reserved: Mapping[str, str]
    targets: Mapping[str, Mapping[str, Mapping[str, Any]]]
    secret_flags: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    defaults: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def metrics_args(self, engine: str) -> Mapping[str, Any]:
        """The args that turn `engine`'s own Prometheus metrics on (none for vLLM: always on)."""
        return (self.metrics.get(engine) or {}).get("enable") or {}

    def metrics_path(self, engine: str) -> str | None:
        return (self.metrics.get(engine) or {}).get("path")

    def spec(self, key: str, engine: str) -> Mapping[str, Any] | None:
        entry = self.canonical.get(key)
        return None if entry is None else entry.get(engine)

    def flag(self, key: str, engine: str, flags: EngineFlags | None = None) -> str | None:
        """The flag canonical `key` becomes in `engine`, as the version of `flags` spells it.
        canonical.yaml gives one spelling, or a list of them, newest first (a flag renamed
        between versions): the first one `flags` has wins; with none known, the first."""
        spelled = (self.spec(key, engine) or {}).get("flag")
        if not spelled:
            return None
        options = [spelled] if isinstance(spelled, str) else list(spelled)
        if flags is not None:
            for option in options:
                if flags.get(option) is not None:
                    return option
        return options[0]

    def target_args(self, target: str, engine: str) -> Mapping[str, Any]:
        return (self.targets.get(target) or {}).get(engine) or {}

    def engine_value(self, key: str, engine: str, value: Any) -> Any:
        """`value` of canonical arg `key` as `engine` spells it: the `values:` translation of
        canonical.yaml when it has one (SGLang's `fp8_e4m3` for `--kv-cache-dtype fp8`), else
        `value` unchanged (a native key, a non-string, a value the engine takes as written)."""
        values = (self.spec(key, engine) or {}).get("values") or {}
        return values[value] if isinstance(value, str) and value in values else value


@lru_cache(maxsize=None)
def table() -> Table:
    from aim_engine import yaml_documents

    # Next to this module, like flags/ (importlib.resources would import zipfile: ~3 ms a boot).
    raw = yaml_documents.load(Path(__file__).resolve().parent / "canonical.yaml")
    return Table(
        canonical=raw.get("canonical") or {},
        dtype_aliases=raw.get("dtype_aliases") or {},
        reserved=raw.get("reserved") or {},
        targets=raw.get("targets") or {},
        secret_flags=raw.get("secret_flags") or {},
        defaults=raw.get("defaults") or {},
        metrics=raw.get("metrics") or {},
    )


def engine_value(key: str, engine: str, value: Any) -> Any:
    """The one translation of a canonical arg's value into `engine`'s spelling (see
    `Table.engine_value`): the adapters render with it, the catalog validator checks with it and
    the recipe generator writes with it, so the three cannot drift apart."""
    return table().engine_value(key, engine, value)


# ------------------------------------------------------------------ the pure core
def normalize_key(raw: str) -> str:
    """A flag as the engines' parsers read it: `--max_model_len` is `--max-model-len` (a
    `--section.key` path into a JSON flag keeps its underscores). Every comparison of an arg
    key (merging layers, the agent's reserved flags) goes through this one spelling."""
    key = raw.strip()
    if key.startswith("--") and "_" in key and "." not in key:
        return key.replace("_", "-")
    return key


@dataclass
class _Entry:
    flag: str           # the engine flag to emit
    value: Any
    source: str         # canonical key (or dest) that produced it; overrides replace by source
    origin: str         # where it came from, for error messages


@dataclass(frozen=True)
class RenderedArgs:
    args: list[str]                     # engine arguments (no command), model first for positional
    overrides_applied: dict[str, Any]


class ArgRenderer:
    """Builds one engine's argument list from layered arg mappings. Pure: data in, argv out."""

    def __init__(self, engine: str, flags: EngineFlags | None = None, tbl: Table | None = None,
                 label: str | None = None) -> None:
        self.engine = engine
        self.flags = flags or load_flags(engine)
        self.table = tbl or table()
        # How errors name the list argv is checked against: `vllm 0.33.0` (the installed version's),
        # or what flags.FlagChoice.label says when that is not exact.
        self.label = label or f"{engine} {self.flags.version}"
        self.entries: dict[str, _Entry] = {}       # dest -> entry, in insertion order
        self.positional: str | None = None
        self.overrides_applied: dict[str, Any] = {}
        # False for a pre-quantized checkpoint: `--dtype float8` then must not add
        # `--quantization fp8` (the engine reads the checkpoint's own quantization_config).
        self.online_quantization = True
        # secret-valued flags moved to the environment (never argv): variable -> value
        self.secret_env: dict[str, str] = {}
        self._secret_flags = self.table.secret_flags.get(engine) or {}
        # native flag (any spelling) -> canonical key, so `--max-num-seqs` and `--max-batch-size`
        # are the same setting for merging purposes.
        self._native_to_canonical: dict[str, str] = {}
        for key in self.table.canonical:
            flag = self.table.flag(key, engine, self.flags)
            info = self.flags.get(flag) if flag else None
            for option in (info.option_strings if info else ((flag,) if flag else ())):
                self._native_to_canonical[option] = key

    # ---- translation of one key/value into (flag, value) pairs
    def _translate(self, key: str, value: Any, origin: str) -> tuple[str, list[tuple[str, Any]]]:
        """Return (source, [(engine flag, value), ...]) for one recipe/override entry."""
        canonical = key if key in self.table.canonical else self._native_to_canonical.get(key)
        if key == "--dtype" or canonical == "--dtype":
            alias = self.table.dtype_aliases.get(str(value).strip().lower()) if value is not None else None
            if alias:
                pairs: list[tuple[str, Any]] = []
                for alias_key, alias_value in alias.items():
                    if alias_key == "--quantization" and not self.online_quantization:
                        continue
                    pairs.extend(self._translate(alias_key, alias_value, origin)[1])
                return "--dtype", pairs
        if canonical is not None and key in self.table.canonical:
            spec = self.table.spec(key, self.engine) or {}
            if spec.get("positional"):
                return key, [("<positional>", value)]
            flag = self.table.flag(key, self.engine, self.flags)
            if not flag:
                raise AimError(f"{origin}: {key} has no {self.engine} equivalent",
                               hint=f"remove it, or use a real {self.engine} flag")
            return key, [(flag, self.table.engine_value(key, self.engine, value))]
        return canonical or key, [(key, value)]

    def _check_flag(self, flag: str, origin: str) -> FlagInfo | None:
        """The FlagInfo of an exact engine flag; AimError with close matches otherwise."""
        info = self.flags.get(flag)
        if info is not None:
            return info
        base, dot, _ = flag.partition(".")
        if dot and self.engine == "vllm":
            # FlexibleArgumentParser: `--compilation-config.level 3` sets one key of a JSON flag.
            parent = self.flags.get(base)
            if parent is not None and parent.takes_value:
                return None
        matches = self.flags.close_matches(flag)
        hint = f"did you mean {', '.join(matches)}?" if matches else f"see `{self._help_command()}`"
        prefix_of = [f for f in self.flags.flags if f.startswith(flag)]
        why = (f" (the engine would silently read it as {prefix_of[0]}: argparse accepts unambiguous prefixes)"
               if len(prefix_of) == 1 else "")
        raise AimError(f"{origin}: {flag!r} is not a {self.label} flag{why}", hint=hint)

    def _help_command(self) -> str:
        return "vllm serve --help=all" if self.engine == "vllm" else "python3 -m sglang.launch_server --help"

    def _dest(self, flag: str, info: FlagInfo | None) -> str:
        return info.dest if info is not None else flag

    def _remove_source(self, source: str) -> None:
        for dest in [d for d, e in self.entries.items() if e.source == source]:
            del self.entries[dest]

    # ---- layers
    def apply(self, args: Mapping[str, Any], origin: str, *, replace_source: bool = True,
              record: bool = False, skip: Iterable[str] = ()) -> None:
        """Merge one layer. `replace_source`: an entry replaces everything its key produced
        before (so `--dtype bfloat16` over `--dtype float8` also drops the derived quantization)."""
        skipped = set(skip)
        for raw_key, value in args.items():
            key = normalize_key(raw_key)
            if key in skipped:
                continue
            key, value = self._normalize_negation(key, value, origin)
            source, pairs = self._translate(key, value, origin)
            if replace_source:
                self._remove_source(source)
            if record:
                shown = pairs[0][0] if len(pairs) == 1 and pairs[0][0] != "<positional>" else key
                secret = shown in self._secret_flags and value is not None
                self.overrides_applied[shown] = MASK if secret else value
            for index, (flag, flag_value) in enumerate(pairs):
                if flag == "<positional>":
                    self.positional = None if flag_value is None else str(flag_value)
                    continue
                info = self._check_flag(flag, origin)
                if info is not None and self._secret(info, flag_value, origin):
                    continue
                dest = self._dest(flag, info)
                if flag_value is None:
                    self.entries.pop(dest, None)
                    continue
                if index > 0 and dest in self.entries and self.entries[dest].source != source:
                    continue     # a derived flag never replaces one the recipe set explicitly
                self.entries.pop(dest, None)
                self.entries[dest] = _Entry(flag=primary(info) if info else flag, value=flag_value,
                                            source=source, origin=origin)

    def _secret(self, info: FlagInfo, value: Any, origin: str) -> bool:
        """True when `info` is a secret flag (its value went to the environment)."""
        secret = next((o for o in info.option_strings if o in self._secret_flags), None)
        if secret is None:
            return False
        variable = self._secret_flags[secret]
        if variable is None:
            raise AimError(f"{origin}: {secret} would put a secret on the command line, where every process can read it",
                           hint=f"{self.engine} cannot read it from the environment; remove {secret}")
        if value is None:
            self.secret_env.pop(variable, None)
        else:
            self.secret_env[variable] = str(value)
        return True

    def _normalize_negation(self, key: str, value: Any, origin: str) -> tuple[str, Any]:
        """`--no-x: true` is `--x: false` (a switch with an "off" spelling), so both spellings merge."""
        info = self.flags.get(key)
        if info is not None and value is not None and is_negative(info, key):
            return primary(info), not _switch_value(value, key, origin)
        return key, value

    # ---- output
    def render(self) -> RenderedArgs:
        out: list[str] = []
        if self.positional is not None:
            out.append(self.positional)
        for entry in self.entries.values():
            info = self.flags.get(entry.flag)
            if info is not None and not info.takes_value:
                on = _switch_value(entry.value, entry.flag, entry.origin)
                if on:
                    out.append(entry.flag)
                elif negation(info):
                    out.append(negation(info))     # explicit: the engine's default may be on
                continue
            values = _as_values(entry.value)
            if info is not None and info.choices is not None:
                bad = [v for v in values if v not in info.choices]
                if bad:
                    raise AimError(
                        f"{entry.origin}: {entry.flag} {bad[0]!r} is not accepted by {self.label}",
                        hint=f"allowed: {', '.join(info.choices)}",
                    )
            if info is not None and len(values) > 1 and not multiple(info):
                raise AimError(f"{entry.origin}: {entry.flag} takes one value, got {len(values)}")
            out.append(entry.flag)
            out.extend(values)
        return RenderedArgs(args=out, overrides_applied=dict(self.overrides_applied))


def _switch_value(value: Any, flag: str, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in SWITCH_TRUE:
        return True
    if text in SWITCH_FALSE:
        return False
    raise AimError(f"{origin}: {flag} is a switch (takes no value), got {value!r}",
                   hint='write "true" to set it, "false" to leave it out, or null to remove it')


def _as_values(value: Any) -> list[str]:
    """Recipe/override value -> argv tokens: lists repeat, objects become JSON, bools lower-case."""
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _as_values(v)]
    if isinstance(value, Mapping):
        return [json.dumps(value, separators=(",", ":"))]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]
