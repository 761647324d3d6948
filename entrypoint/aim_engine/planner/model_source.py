"""What `AIM_MODEL_ID` names, and the model facts the planner needs for it.

`AIM_MODEL_ID` may be:
- a catalog name (model id, Hugging Face id, slug, alias or a declared variant's id);
- a local directory holding a `config.json` (KServe mounts the model at `/mnt/models`);
- a Hugging Face id outside the catalog: its `config.json` is read from the persistent cache
  when present, else fetched from the hub (`HF_ENDPOINT`, `HF_TOKEN`) unless `AIM_OFFLINE`.

`model_from_config` is the pure core (a parsed `config.json` -> a `Model`); `resolve` is the thin
edge that touches the disk and the network. huggingface_hub is imported only when the hub must
really be asked, so `aim-engine plan` for a catalog model stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from aim_engine.catalog import config_facts
from aim_engine.catalog.config_facts import Facts
from aim_engine.catalog.types import Attention, Model, Moe, Variant
from aim_engine.errors import AimError, shown

HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")

# bytes per parameter of a checkpoint's precision (for a size estimate without an index).
_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "mxfp4": 0.5}
# What a config.json outside the catalog may leave out, and the value the planner assumes then
# (the transformers LlamaConfig defaults).
DEFAULT_VOCAB = 32000
DEFAULT_MAX_POSITIONS = 4096
DEFAULT_EXPERTS_PER_TOKEN = 2


@dataclass(frozen=True)
class ModelSource:
    """The resolved `AIM_MODEL_ID`.

    kind: "catalog" (a model card), "local" (a directory), "hub" (an HF id outside the catalog).
    checkpoint: what the engine must load when the user named one exactly (a local directory, a
    variant id, an HF id outside the catalog); None lets each recipe say (its `huggingface_id`).
    """

    requested: str
    kind: str
    model: Model
    served_model_name: str
    checkpoint: str | None = None
    variant: Variant | None = None
    quantization: str | None = None    # the checkpoint's own quant method (config.json)
    notes: tuple[str, ...] = ()

    @property
    def in_catalog(self) -> bool:
        return self.kind == "catalog"


# ---------------------------------------------------------------- pure core: config.json -> Model


def _facts(config: Any) -> Facts:
    return config if isinstance(config, Facts) else config_facts.read(config)


def checkpoint_precision(config: Any) -> tuple[str, str | None]:
    """(catalog precision, quant method) of a checkpoint from its config.json (or its `Facts`).

    A pre-quantized checkpoint says so in `quantization_config`; otherwise the weights are the
    torch dtype (fp32 checkpoints are served in bf16, as both engines do with dtype=auto).
    """
    facts = _facts(config)
    method, bits = facts.quant_method, facts.quant_bits
    if method:
        if method in ("fp8", "fbgemm_fp8"):
            return "fp8", method
        if method == "mxfp4":
            return "mixed", method
        if bits == 4:
            return "int4", method
        if bits == 8:
            return "int8", method
        if method in ("awq", "gptq"):
            return "int4", method
        return "mixed", method
    dtype = facts.native_dtype or "bf16"
    return ("bf16" if dtype == "fp32" else dtype), None


def estimate_parameters(config: Any) -> tuple[int, int]:
    """(total, active) parameters from the architecture numbers, for when no safetensors index
    or file sizes are available. Embeddings + attention + MLP (or experts) per layer."""
    f = _facts(config)
    hidden, heads, kv_heads = f.hidden_size, f.heads, f.kv_heads
    vocab = f.vocab_size or DEFAULT_VOCAB
    inter = f.intermediate_size or 4 * hidden
    embed = vocab * hidden * (1 if f.tie_word_embeddings else 2)
    attn = hidden * f.head_dim * (2 * heads + 2 * kv_heads)
    if f.experts:
        per_token = f.experts_per_token or DEFAULT_EXPERTS_PER_TOKEN
        shared = f.shared_experts or 0
        expert_inter = f.moe_intermediate_size or inter
        mlp_total = 3 * hidden * expert_inter * (f.experts + shared)
        mlp_active = 3 * hidden * expert_inter * (per_token + shared)
    else:
        mlp_total = mlp_active = 3 * hidden * inter
    return embed + f.layers * (attn + mlp_total), embed + f.layers * (attn + mlp_active)


def model_from_config(config: Any, model_id: str, weights_bytes: int | None = None,
                      name: str | None = None, where: str = "config.json") -> Model:
    """A `Model` for a checkpoint outside the catalog, from its parsed config.json, read by the
    one config.json reader (`catalog.config_facts`, which fetch-cards uses for the catalog).

    `weights_bytes` is the real size of the weights (safetensors index or file sizes); without
    it the size is estimated from the architecture. Raises ConfigError (an AimError) naming
    `where`, the key and the bad value when the config cannot be used.
    """
    facts = config if isinstance(config, Facts) else config_facts.read(config, where)
    precision, _ = checkpoint_precision(facts)
    attention = Attention(
        kind=facts.kind, heads=facts.heads, kv_heads=facts.kv_heads, head_dim=facts.head_dim,
        sliding_window=facts.sliding_window, sliding_window_layers=facts.sliding_window_layers,
        kv_lora_rank=facts.kv_lora_rank, qk_rope_head_dim=facts.qk_rope_head_dim,
        qk_nope_head_dim=facts.qk_nope_head_dim, v_head_dim=facts.v_head_dim, q_lora_rank=facts.q_lora_rank,
    )
    moe = Moe(experts=facts.experts, experts_per_token=facts.experts_per_token or DEFAULT_EXPERTS_PER_TOKEN,
              shared_experts=facts.shared_experts or 0) if facts.experts else None
    total, active = estimate_parameters(facts)
    native = {"mixed": "mxfp4"}.get(precision, precision)   # int8: served as is (memory.native_precision)
    if weights_bytes is None:
        weights_bytes = int(total * _BYTES.get(native, 2.0))
    slug = re.sub(r"[^a-z0-9.-]+", "-", (name or model_id).rsplit("/", 1)[-1].lower()).strip("-.") or "model"
    return Model(
        model_id=model_id, huggingface_id=model_id, slug=slug, architecture=facts.architecture or "unknown",
        parameters_total=total, parameters_active=active,
        layers=facts.layers, hidden_size=facts.hidden_size, attention=attention,
        max_position_embeddings=facts.max_position_embeddings or DEFAULT_MAX_POSITIONS,
        vocab_size=facts.vocab_size or DEFAULT_VOCAB, native_dtype=native,
        weights_bytes=int(weights_bytes), license="unknown", gated=False,
        trust_remote_code=facts.needs_remote_code, moe=moe,
        intermediate_size=facts.intermediate_size,
        multimodal=facts.multimodal,
        description="synthesized from config.json (not in the catalog)",
    )


# ---------------------------------------------------------------- the edge: disk and network


def _read_config(path: Path) -> Facts:
    """config.json's facts; a ConfigError naming the file for anything unusable."""
    return config_facts.read_file(path)[1]


def weights_size_in(directory: Path) -> int | None:
    """Bytes of the weights in a checkpoint directory: the safetensors index's total_size, else
    the sum of *.safetensors (or *.bin) files; None when there are none (then we estimate). A
    damaged index (not an object, a size that is not a whole number of bytes) is an error naming
    the file, not a silent estimate."""
    index = directory / config_facts.INDEX_FILE
    if index.is_file():
        total = config_facts.total_size(config_facts.load_json(index, "safetensors index"), str(index))
        if total:
            return total
    for pattern in ("*.safetensors", "*.bin"):
        try:
            files = [p for p in directory.glob(pattern) if p.is_file()]
            if files:
                return sum(p.stat().st_size for p in files)
        except OSError as exc:
            raise AimError(f"cannot list the weights in {directory}: {exc.strerror or exc}") from None
    return None


def cached_snapshot(hub_cache: Path, repo_id: str, revision: str) -> Path | None:
    """The snapshot directory of `repo_id@revision` in a huggingface_hub cache, if it holds a
    config.json. Reads the cache layout directly (models--org--name/refs, snapshots) so that a
    warm cache needs neither the network nor the huggingface_hub import."""
    repo_dir = hub_cache / ("models--" + repo_id.replace("/", "--"))
    commit = revision if COMMIT.match(revision) else None
    if commit is None:
        from aim_engine.confine import problem_with_relative, read_bounded

        if problem_with_relative(revision):
            return None
        try:   # cache content: bounded, a regular file, a single path component (aim_engine.confine)
            commit = read_bounded(repo_dir / "refs" / revision, 4096, follow=False).decode("utf-8").strip()
        except (OSError, ValueError):
            return None
    from aim_engine.confine import problem_with_name

    if problem_with_name(commit):
        return None
    snapshot = repo_dir / "snapshots" / commit
    return snapshot if (snapshot / "config.json").is_file() else None


# The first hub contact of a boot: a few quick tries, so an unreachable hub is reported in
# seconds (huggingface_hub's own retry of a failed metadata call waits up to ~40 s).
PROBE_RETRY = dict(attempts=3, base=0.5, max_wait=2.0, max_retry_after=5.0)


def _hub_error(exc: BaseException, repo_id: str, settings: Any) -> AimError:
    """What went wrong reading config.json from the hub, worded by the one hub-error translator
    (`cache.download.translate`: gated, missing or private repos, revisions, HTTP answers, a
    server that is not a hub), as the cache and fetch-cards word them. Only what is particular to
    reading a model's facts is worded here: a repo without config.json, and an unreachable hub
    (the hint says why config.json is needed). Never names the token."""
    from huggingface_hub import errors as hf

    from aim_engine.cache.download import describe, endpoint_of, http_status, translate

    endpoint = endpoint_of(settings)
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return AimError(f"{repo_id} has no config.json on {endpoint}: not a transformers checkpoint the engines "
                        "can load")
    cause, detail = describe(exc, [settings.hf_token] if settings.hf_token else [])
    if isinstance(exc, (hf.GatedRepoError, hf.RepositoryNotFoundError, hf.RevisionNotFoundError)) \
            or http_status(exc) is not None or isinstance(cause, hf.FileMetadataError):
        worded = translate(exc, settings, repo_id, settings.model_revision, "config.json")
        # The words are the translator's; the kind stays a selection failure (a HubError is the
        # download's, which /status and /metrics report as such).
        return AimError(worded.message, hint=worded.hint)
    return AimError(f"cannot reach the Hugging Face hub at {endpoint} to read config.json of {repo_id} "
                    f"({type(cause).__name__}: {detail})",
                    hint=f"{repo_id} is not in the catalog, so its config.json is needed: check HF_ENDPOINT, "
                         "the network and proxies, or pre-warm the cache where the hub is reachable "
                         "(`aim-engine download`) and set AIM_OFFLINE=1")


def _probe_config(repo_id: str, settings: Any) -> None:
    """One metadata request for config.json with a few quick retries: proves the hub answers and
    the file is readable before huggingface_hub (with its long retries) downloads it."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import FileMetadataError

    from aim_engine.cache.download import RetryPolicy, endpoint_of, with_retries
    from aim_engine.logs import get_logger

    endpoint = endpoint_of(settings)
    url = hf_hub_url(repo_id, "config.json", revision=settings.model_revision, endpoint=endpoint)

    def head() -> None:
        meta = get_hf_file_metadata(url, token=settings.hf_token or False, endpoint=endpoint,
                                    library_name="aim-engine")
        if meta.commit_hash is None:
            raise FileMetadataError(f"the answer for {url} has no X-Repo-Commit header")

    with_retries(head, RetryPolicy(**PROBE_RETRY), f"config.json of {repo_id}",
                 get_logger("aim_engine.planner", model=repo_id))


def _hub_fetch(repo_id: str, settings: Any) -> tuple[Facts, int | None]:
    """config.json (and the weights size) of a repo from the hub; every failure is an AimError
    naming the repo and the endpoint, never the token."""
    from huggingface_hub import hf_hub_download  # lazily: heavy, and most boots never need it

    from aim_engine.cache.download import endpoint_of
    from aim_engine.cache.layout import check_cache_root

    check_cache_root(settings.cache_path)   # the download lands in the cache: a file there is not "the hub"
    common = dict(revision=settings.model_revision, cache_dir=str(settings.hub_cache),
                  token=settings.hf_token or False, endpoint=endpoint_of(settings))
    try:
        _probe_config(repo_id, settings)
        config_path = hf_hub_download(repo_id, "config.json", **common)
    except Exception as exc:  # noqa: BLE001 — every failure is told apart in _hub_error
        raise _hub_error(exc, repo_id, settings) from None
    facts = _read_config(Path(config_path))
    size: int | None = None
    try:
        index_path: str | None = hf_hub_download(repo_id, config_facts.INDEX_FILE, **common)
    except Exception:  # noqa: BLE001 — no index (a single-file checkpoint) or unreadable: measured below
        index_path = None
    if index_path is not None:   # the index's content is checked: a damaged one is an error, not a guess
        size = config_facts.total_size(config_facts.load_json(Path(index_path), "safetensors index"), index_path)
    if size is None:
        try:  # single-file checkpoints have no index: ask for the file's size
            from huggingface_hub import HfApi

            api = HfApi(endpoint=common["endpoint"], token=settings.hf_token or False)
            infos = api.get_paths_info(repo_id, ["model.safetensors"], revision=settings.model_revision)
            size = sum(int(getattr(i, "size", 0) or 0) for i in infos) or None
        except Exception:  # noqa: BLE001 — the size is then estimated from the architecture
            size = None
    return facts, size


def _remote_code(model: Model, settings: Any, where: str) -> tuple[str, ...]:
    """A checkpoint outside the catalog whose config.json has `auto_map` needs the engine's
    --trust-remote-code, which runs Python code from that repository inside the container: only
    with the explicit opt-in AIM_TRUST_REMOTE_CODE (catalog models carry their own reviewed flag)."""
    if not model.trust_remote_code:
        return ()
    if not getattr(settings, "trust_remote_code", False):
        raise AimError(f"{model.model_id} needs --trust-remote-code: {where} has auto_map, so loading it runs "
                       "Python code from the model's repository inside the container",
                       hint="set AIM_TRUST_REMOTE_CODE=true if you trust that repository's code, or serve a "
                            "catalog model (`aim-engine recipes list --all`)")
    return (f"AIM_TRUST_REMOTE_CODE=true: {model.model_id} runs with --trust-remote-code ({where} has auto_map)",)


def _looks_local(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..")


def _user_path(requested: str) -> Path:
    """`requested` as a path, `~user` expanded; an unknown user is the user's error."""
    try:
        return Path(requested).expanduser()
    except RuntimeError:
        raise AimError(f"AIM_MODEL_ID={shown(requested)}: {requested.split('/', 1)[0]} is not a known home directory",
                       hint="give an absolute path to the model directory, or a Hugging Face id") from None


def _is_dir(path: Path) -> bool:
    """`path.is_dir()`, False where the OS cannot even look (a name too long, a link loop)."""
    try:
        return path.is_dir()
    except (OSError, RuntimeError):
        return False


def _local(requested: str, path: Path, served: str | None, settings: Any) -> ModelSource:
    """A model directory on disk (KServe: /mnt/models): facts from its config.json."""
    if not _is_dir(path):
        raise AimError(f"AIM_MODEL_ID={requested!r} looks like a path but is not a directory",
                       hint="mount the model there (KServe uses /mnt/models) or give a Hugging Face id")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AimError(f"AIM_MODEL_ID={requested!r}: the directory has no config.json",
                       hint="point it at a Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer)")
    directory = path.resolve()
    facts = _read_config(config_file)
    name = served or directory.name
    model = model_from_config(facts, str(directory), weights_size_in(directory), name=name)
    _, quant = checkpoint_precision(facts)
    remote = _remote_code(model, settings, str(config_file))
    return ModelSource(requested, "local", model, name, checkpoint=str(directory), quantization=quant,
                       notes=(f"local directory {directory}; served as {name!r}"
                              + ("" if served else " (its directory name; set AIM_SERVED_MODEL_NAME to change)"),
                              *remote))


def resolve(settings: Any, catalog: Any, model_id: str | None = None) -> ModelSource:
    """Resolve `model_id` (default: AIM_MODEL_ID) against the catalog, the disk and the hub."""
    requested = model_id or settings.model_id
    if not requested:
        raise AimError("AIM_MODEL_ID is not set: nothing to serve",
                       hint="set AIM_MODEL_ID to a catalog model (see `aim-engine recipes list --all`), "
                            "a Hugging Face id, or a local model directory")
    requested = requested.strip()
    served = settings.served_model_name

    path = _user_path(requested)
    if _looks_local(requested):
        return _local(requested, path, served, settings)
    model = catalog.find_model(requested)
    if model is not None:
        variant = next((v for v in model.variants if v.huggingface_id.lower() == requested.lower()), None)
        return ModelSource(requested, "catalog", model, served or requested,
                           checkpoint=variant.huggingface_id if variant else None, variant=variant,
                           quantization=variant.quantization if variant else None,
                           notes=(f"catalog model {model.model_id}"
                                  + (f", variant {variant.huggingface_id} ({variant.precision})" if variant else ""),))

    if _is_dir(path):
        return _local(requested, path, served, settings)
    if not HF_ID.match(requested):
        names = sorted({a for m in catalog.models for a in (m.slug, *m.aliases)})[:12]
        raise AimError(f"AIM_MODEL_ID={requested!r} is not a catalog model, a local directory or a Hugging Face id "
                       "(org/name)",
                       hint="catalog names include: " + ", ".join(names) if names else
                       "give a Hugging Face id like org/name or a directory with config.json")

    snapshot = cached_snapshot(settings.hub_cache, requested, settings.model_revision)
    if snapshot is not None:
        facts = _read_config(snapshot / "config.json")
        size = weights_size_in(snapshot)
        origin = f"config.json from the cache ({snapshot})"
    elif settings.offline:
        raise AimError(f"AIM_OFFLINE is set and {requested}@{settings.model_revision} is not in the cache "
                       f"({settings.hub_cache})",
                       hint="warm the cache first (`aim-engine download`) or unset AIM_OFFLINE")
    else:
        from aim_engine.cache.download import endpoint_of   # loaded by _hub_fetch already

        facts, size = _hub_fetch(requested, settings)
        origin = f"config.json from {endpoint_of(settings)}"
    model = model_from_config(facts, requested, size)
    _, quant = checkpoint_precision(facts)
    remote = _remote_code(model, settings, f"config.json of {requested}")
    return ModelSource(requested, "hub", model, served or requested, checkpoint=requested, quantization=quant,
                       notes=(f"{requested} is not in the catalog: {origin}", *remote))
