"""The one reader of a checkpoint's `config.json` (and its safetensors index): model facts.

Two callers need the same facts from the same file and used to read it two ways (Gemma 3's
sliding layers, max positions and vocabulary came out 0 / 4096 / 32000 on one side and
52 / 131072 / 262208 on the other):
- `aim-engine models fetch-cards` (catalog/cards.py) keeps models/*.yaml equal to the hub;
- models planned from outside the catalog (planner/model_source.py) get a `Model` from it.

Per-architecture spellings are a table (`CONFIG_MAPS`): Llama 4 and Gemma 3 nest the language
model under `text_config`, DeepSeek names its experts differently, Qwen ignores `sliding_window`
unless `use_sliding_window`, Gemma 3's text config leaves some values at its class defaults, ...
A `model_type` outside the table is read with `GENERIC` (nested config found by name, experts by
any of the usual keys, `layer_types` or a window on every layer) — fetch-cards refuses those,
since it writes the catalog and must not guess.

config.json comes from outside (a hub repo, a mounted directory), so every value is checked
before use: a fact must be a JSON whole number in its range (no string, list, bool, NaN,
negative or absurd value), a sub-config must be an object; the error names the file, the key,
the bad value and what is allowed (`ConfigError`, an AimError), never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aim_engine.errors import AimError

INDEX_FILE = "model.safetensors.index.json"
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32",
          "float8_e4m3fn": "fp8", "float8_e4m3fnuz": "fp8"}
QUANT_DTYPES = {"fp8": "fp8", "mxfp4": "mxfp4"}   # quant_method of a *native* checkpoint -> native_dtype

# Ranges of the facts (inclusive). Upper bounds are far above any published model (16384 hidden,
# 262K vocabulary, 10M positions, 512 experts) and only stop absurd values from turning into
# absurd plans or huge computations.
BIG = 1 << 24
RANGES: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, 10_000), "hidden_size": (1, 1 << 20), "intermediate_size": (1, BIG),
    "moe_intermediate_size": (1, BIG), "num_attention_heads": (1, 1 << 16), "num_key_value_heads": (1, 1 << 16),
    "head_dim": (1, 1 << 16), "vocab_size": (1, 1 << 26), "max_position_embeddings": (1, 1 << 30),
    "max_sequence_length": (1, 1 << 30), "sliding_window": (1, 1 << 30), "attention_chunk_size": (1, 1 << 30),
    "max_window_layers": (0, 10_000), "sliding_window_pattern": (1, 10_000), "_sliding_window_pattern": (1, 10_000),
    "no_rope_layer_interval": (1, 10_000), "num_local_experts": (1, 1 << 16), "num_experts": (1, 1 << 16),
    "n_routed_experts": (1, 1 << 16), "n_shared_experts": (0, 1 << 16), "num_experts_per_tok": (1, 1 << 16),
    "experts_per_token": (1, 1 << 16), "kv_lora_rank": (1, 1 << 20), "q_lora_rank": (1, 1 << 20),
    "qk_rope_head_dim": (0, 1 << 16), "qk_nope_head_dim": (0, 1 << 16), "v_head_dim": (1, 1 << 16),
    "bits": (1, 64), "w_bit": (1, 64), "weight_bits": (1, 64),
}
TOTAL_SIZE_RANGE = (1, 1 << 52)      # bytes of weights: 1 B .. 4 PiB


class ConfigError(AimError):
    """config.json (or the index) holds something the reader cannot use; says where and why."""


@dataclass(frozen=True)
class ConfigMap:
    """How one `model_type`'s config.json spells the facts we keep.

    `sliding` names the rule that decides which layers use a local attention window:
    none (full attention), window (every layer when `sliding_window` is set: Mistral, Phi-3),
    qwen (only with `use_sliding_window: true`, from layer `max_window_layers` on),
    layer_types (count `sliding_attention` entries: gpt-oss), pattern (every
    `sliding_window_pattern`-th layer is global: Gemma 3), chunked (Llama 4: RoPE layers attend
    within `attention_chunk_size`; every `no_rope_layer_interval`-th layer is global), auto (a
    model type outside the table: `layer_types` if given, else none when `use_sliding_window` is
    false, else a window on every layer).
    """

    nested: str | tuple[str, ...] | None = None    # sub-config holding the language model
    experts: str | tuple[str, ...] | None = None   # key(s) of the routed-expert count
    shared_experts: str | int | None = None        # key of the shared-expert count, or a constant
    sliding: str = "none"
    mla: bool | None = False                       # None: MLA when kv_lora_rank is set
    defaults: Mapping[str, Any] = field(default_factory=dict)  # config class defaults for absent keys


CONFIG_MAPS: dict[str, ConfigMap] = {
    "llama": ConfigMap(),
    "mistral": ConfigMap(sliding="window"),
    "mixtral": ConfigMap(experts="num_local_experts", shared_experts=0, sliding="window"),
    "qwen2": ConfigMap(sliding="qwen"),
    "qwen3": ConfigMap(sliding="qwen"),
    "qwen3_moe": ConfigMap(experts="num_experts", shared_experts=0, sliding="qwen"),
    "deepseek_v3": ConfigMap(experts="n_routed_experts", shared_experts="n_shared_experts", mla=True),
    "gpt_oss": ConfigMap(experts="num_local_experts", shared_experts=0, sliding="layer_types"),
    "phi3": ConfigMap(sliding="window"),
    # Gemma3TextConfig defaults: the 27B config.json leaves these out of text_config.
    "gemma3": ConfigMap(nested="text_config", sliding="pattern",
                        defaults={"vocab_size": 262208, "max_position_embeddings": 131072,
                                  "sliding_window_pattern": 6}),
    "gemma3_text": ConfigMap(sliding="pattern",
                             defaults={"vocab_size": 262208, "max_position_embeddings": 131072,
                                       "sliding_window_pattern": 6}),
    # Llama 4 always has one shared expert next to the routed ones (no config key for it).
    "llama4": ConfigMap(nested="text_config", experts="num_local_experts", shared_experts=1, sliding="chunked",
                        defaults={"no_rope_layer_interval": 4}),
}
GENERIC = ConfigMap(nested=("text_config", "llm_config"), experts=("num_local_experts", "num_experts", "n_routed_experts"),
                    shared_experts="n_shared_experts", sliding="auto", mla=None)


@dataclass(frozen=True)
class Facts:
    """What a config.json states about a model (None: it does not say)."""

    model_type: str
    architecture: str | None
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    kind: str                                  # mha | gqa | mqa | mla
    intermediate_size: int | None
    max_position_embeddings: int | None
    vocab_size: int | None
    native_dtype: str | None                   # bf16 | fp16 | fp32 | fp8 | mxfp4 (None: not stated)
    sliding_window: int | None
    sliding_window_layers: int                 # 0 = every layer (or no window)
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    q_lora_rank: int | None = None
    experts: int | None = None
    experts_per_token: int | None = None
    shared_experts: int | None = None
    moe_intermediate_size: int | None = None
    tie_word_embeddings: bool = False
    quant_method: str | None = None
    quant_bits: int | None = None
    needs_remote_code: bool = False            # `auto_map`: the architecture's code lives in the repo
    multimodal: bool = False

    def paths(self) -> dict[tuple, Any]:
        """The facts as model-file key paths (fetch-cards' vocabulary); absent facts are left out
        except the nullable ones (a window of null means none)."""
        out: dict[tuple, Any] = {
            ("architecture",): self.architecture,
            ("layers",): self.layers,
            ("hidden_size",): self.hidden_size,
            ("intermediate_size",): self.intermediate_size,
            ("max_position_embeddings",): self.max_position_embeddings,
            ("vocab_size",): self.vocab_size,
            ("native_dtype",): self.native_dtype,
            ("attention", "heads"): self.heads,
            ("attention", "kv_heads"): self.kv_heads,
            ("attention", "kind"): self.kind,
            ("attention", "head_dim"): self.head_dim,
        }
        if self.kind == "mla":
            out.update({
                ("attention", "kv_lora_rank"): self.kv_lora_rank,
                ("attention", "qk_rope_head_dim"): self.qk_rope_head_dim,
                ("attention", "qk_nope_head_dim"): self.qk_nope_head_dim,
                ("attention", "v_head_dim"): self.v_head_dim,
                ("attention", "q_lora_rank"): self.q_lora_rank,
            })
        out[("attention", "sliding_window")] = self.sliding_window
        out[("attention", "sliding_window_layers")] = self.sliding_window_layers
        if self.experts is not None or self.experts_per_token is not None:
            out[("moe", "experts")] = self.experts
            out[("moe", "experts_per_token")] = self.experts_per_token
            out[("moe", "shared_experts")] = self.shared_experts
        nullable = {("attention", "sliding_window"), ("attention", "q_lora_rank")}
        return {path: value for path, value in out.items() if value is not None or path in nullable}


# ---------------------------------------------------------------- checked access


class _Section:
    """One JSON object of config.json with checked getters that name the file and key."""

    def __init__(self, data: Mapping[str, Any], where: str, prefix: str = "") -> None:
        self.data, self.where, self.prefix = data, where, prefix

    def _fail(self, key: str, value: Any, allowed: str) -> ConfigError:
        shown = json.dumps(value, allow_nan=True)[:80] if _jsonable(value) else repr(value)[:80]
        return ConfigError(f"{self.where}: {self.prefix}{key} is {shown}; {allowed}",
                           hint="a transformers config.json states this as a whole number; fix the file "
                                "or serve the model through a catalog model card (AIM_MODELS_DIR)")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def count(self, key: str, default: Any = None) -> Any:
        """A whole number in `RANGES[key]`, `default` when the key is absent or null."""
        value = self.data.get(key)
        if value is None:
            return default
        low, high = RANGES[key]
        allowed = f"it must be a whole number from {low} to {high}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, value, allowed)
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise self._fail(key, value, allowed)
            value = int(value)
        if not low <= value <= high:
            raise self._fail(key, value, allowed)
        return value

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, value, "it must be a string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, value, "it must be true or false")
        return value

    def section(self, key: str) -> "_Section | None":
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._fail(key, value, "it must be a JSON object")
        return _Section(value, self.where, f"{self.prefix}{key}.")

    def strings(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, value, "it must be a list of strings")
        return value


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------- the mapping


def _pick(names: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if names is None:
        return ()
    return (names,) if isinstance(names, str) else names


def _language_model(top: _Section, spec: ConfigMap) -> _Section:
    """The section holding the language model's numbers (+ the class defaults of absent keys)."""
    for key in _pick(spec.nested):
        nested = top.section(key)
        if nested is None:
            continue
        if spec is GENERIC:
            if not nested.has("hidden_size"):
                continue
            merged = {**top.data, **nested.data}   # the language numbers win over the wrapper's
            return _Section(merged, top.where, "")
        return _Section({**spec.defaults, **nested.data}, top.where, nested.prefix)
    return _Section({**spec.defaults, **top.data}, top.where, "")


def _sliding(rule: str, text: _Section, layers: int) -> tuple[int | None, int]:
    """(window, layers using it); layers 0 = every layer (or no window)."""
    window = text.count("sliding_window")
    layer_types = text.strings("layer_types")
    if rule == "none":
        return None, 0
    if layer_types:
        count = sum(1 for t in layer_types if t in ("sliding_attention", "chunked_attention"))
        return (window, count) if window and count else (None, 0)
    if rule == "auto":
        if not text.flag("use_sliding_window", True) or not window:
            return None, 0
        return window, 0
    if rule in ("window", "layer_types"):   # layer_types without the list: a window on every layer
        return (window, 0) if window else (None, 0)
    if rule == "qwen":
        if not text.flag("use_sliding_window", False) or not window:
            return None, 0
        first = text.count("max_window_layers", 0)
        return window, max(layers - first, 0)
    if rule == "pattern":
        pattern = text.count("sliding_window_pattern") or text.count("_sliding_window_pattern")
        if not window or not pattern:
            return (window, 0) if window else (None, 0)
        return window, layers - layers // pattern
    if rule == "chunked":
        chunk = text.count("attention_chunk_size")
        if not chunk:
            return None, 0
        no_rope = text.data.get("no_rope_layers")
        if isinstance(no_rope, list) and len(no_rope) == layers:
            return chunk, sum(1 for flag in no_rope if flag)   # 1 = uses RoPE = chunked
        return chunk, layers - layers // text.count("no_rope_layer_interval", 4)
    raise ValueError(f"unknown sliding rule {rule!r}")


def _quantization(top: _Section) -> tuple[str | None, int | None]:
    quant = top.section("quantization_config")
    if quant is None:
        return None, None
    method = quant.text("quant_method")
    bits = quant.count("bits") or quant.count("w_bit") or quant.count("weight_bits")
    return (method.lower() if method else None), bits


def _dtype(top: _Section, text: _Section, quant_method: str | None) -> str | None:
    if quant_method in QUANT_DTYPES:
        return QUANT_DTYPES[quant_method]
    raw = top.text("torch_dtype") or top.text("dtype") or text.text("torch_dtype") or text.text("dtype")
    return DTYPES.get(raw.lower()) if raw else None


def read(config: Any, where: str = "config.json", *, known_only: bool = False) -> Facts:
    """The facts `config` (a parsed config.json) states. `where` names the file in errors;
    `known_only` refuses a model_type outside `CONFIG_MAPS` (fetch-cards)."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} must hold a JSON object, got {_json_type(config)}",
                          hint="a transformers checkpoint's config.json is an object of settings")
    top = _Section(config, where)
    model_type = top.text("model_type") or ""
    spec = CONFIG_MAPS.get(model_type)
    if spec is None:
        if known_only:
            raise ConfigError(f"{where} has model_type {model_type!r}, which fetch-cards cannot map",
                              hint=f"known model types: {', '.join(sorted(CONFIG_MAPS))} (add a row to CONFIG_MAPS)")
        spec = GENERIC
    text = _language_model(top, spec)
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads") if not text.has(k)]
    if missing:
        raise ConfigError(f"{where} (model_type {model_type!r}) lacks {', '.join(missing)}: cannot size the model",
                          hint="serve it with a catalog recipe (AIM_RECIPE_ID) or add a model card in AIM_MODELS_DIR")
    layers = text.count("num_hidden_layers")
    hidden = text.count("hidden_size")
    heads = text.count("num_attention_heads")
    kv_heads = text.count("num_key_value_heads", heads)
    mla = spec.mla if spec.mla is not None else text.has("kv_lora_rank")
    if not mla and (kv_heads > heads or heads % kv_heads):
        raise ConfigError(f"{where}: {text.prefix}num_attention_heads {heads} cannot share "
                          f"{text.prefix}num_key_value_heads {kv_heads} evenly",
                          hint="the KV heads must divide the attention heads (1 = MQA, equal = MHA)")
    quant_method, quant_bits = _quantization(top)
    facts: dict[str, Any] = {}
    if mla:
        nope, rope = text.count("qk_nope_head_dim"), text.count("qk_rope_head_dim")
        if nope is None or rope is None:
            raise ConfigError(f"{where}: an MLA model (kv_lora_rank) needs qk_nope_head_dim and qk_rope_head_dim")
        facts.update(kind="mla", head_dim=nope + rope, kv_lora_rank=text.count("kv_lora_rank"),
                     qk_rope_head_dim=rope, qk_nope_head_dim=nope, v_head_dim=text.count("v_head_dim"),
                     q_lora_rank=text.count("q_lora_rank"))
    else:
        kind = "mha" if kv_heads == heads else "mqa" if kv_heads == 1 else "gqa"
        head_dim = text.count("head_dim") or hidden // heads
        if head_dim < 1:
            raise ConfigError(f"{where}: hidden_size {hidden} / num_attention_heads {heads} leaves no head "
                              "dimension and head_dim is not given")
        facts.update(kind=kind, head_dim=head_dim)
    window, window_layers = _sliding(spec.sliding, text, layers)
    experts = next((text.count(k) for k in _pick(spec.experts) if text.has(k)), None)
    if experts is not None:
        shared = spec.shared_experts
        facts.update(experts=experts,
                     experts_per_token=text.count("num_experts_per_tok") or text.count("experts_per_token"),
                     shared_experts=text.count(shared, 0) if isinstance(shared, str) else shared,
                     moe_intermediate_size=text.count("moe_intermediate_size"))
    architectures = top.strings("architectures")
    return Facts(
        model_type=model_type, architecture=architectures[0] if architectures else None,
        layers=layers, hidden_size=hidden, heads=heads, kv_heads=kv_heads,
        intermediate_size=text.count("intermediate_size"),
        max_position_embeddings=text.count("max_position_embeddings") or text.count("max_sequence_length"),
        vocab_size=text.count("vocab_size"),
        native_dtype=_dtype(top, text, quant_method),
        sliding_window=window, sliding_window_layers=window_layers,
        tie_word_embeddings=text.flag("tie_word_embeddings", False),
        quant_method=quant_method, quant_bits=quant_bits,
        needs_remote_code=top.data.get("auto_map") is not None,
        multimodal=top.has("text_config") or top.has("vision_config"),
        **facts,
    )


def _json_type(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false",
            type(None): "null"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- files


JSON_MAX_BYTES = 64 << 20   # config.json is a few KB, a safetensors index a few MB


def load_json(path: Path, what: str) -> Any:
    """A JSON file's content; ConfigError naming the file for unreadable, non-UTF-8 or invalid
    JSON (never a traceback). Read bounded, and only from a regular file (aim_engine.confine): a
    config.json in the shared cache or a model folder may be a FIFO, /dev/zero or a link to a
    weights blob, which must not hang the agent or fill its memory."""
    from aim_engine.confine import read_bounded

    try:
        raw = read_bounded(path, JSON_MAX_BYTES)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})",
                          hint="JSON files are UTF-8; the file is damaged or not a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests too deeply to be a config file") from None


def read_file(path: Path) -> tuple[dict[str, Any], Facts]:
    """config.json at `path`: (the parsed object, its facts)."""
    config = load_json(path, "config.json")
    return config, read(config, str(path))


def total_size(index: Any, where: str) -> int | None:
    """`metadata.total_size` of a safetensors index (bytes of the weights), checked: None when
    the index does not state it; ConfigError for an index that is not an object or a size that
    is not a whole number of bytes in range."""
    if not isinstance(index, Mapping):
        raise ConfigError(f"{where} must hold a JSON object, got {_json_type(index)}",
                          hint="a safetensors index is {\"metadata\": {\"total_size\": N}, \"weight_map\": {...}}")
    metadata = _Section(index, where).section("metadata")
    if metadata is None:
        return None
    value = metadata.data.get("total_size")
    if value is None:
        return None
    low, high = TOTAL_SIZE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and (not math.isfinite(value) or value != int(value))) or not low <= value <= high:
        raise metadata._fail("total_size", value, f"it must be a whole number of bytes from {low} to {high}")
    return int(value)
