"""Model cards: a checkpoint's `config.json` and safetensors index, mapped onto a model file.

`aim-engine models fetch-cards` keeps the facts in `models/*.yaml` equal to what the Hugging Face
hub publishes. The work splits into a pure core and a thin edge:

- pure: `facts_from_config` / `card_facts` (the one config.json reader, `catalog.config_facts`,
  which planning a model from outside the catalog uses too), then `diff` and `apply_changes`
  (`catalog.model_file_patch`, the comment-keeping YAML patcher);
- edge: `fetch_card` (the real `huggingface_hub` client with an explicit `endpoint=`, because the
  library reads `HF_ENDPOINT` only once at import; the one retry policy and the one hub-error
  translator of every hub call, in `cache.download`), and `write_atomic` (temp file + rename: a
  model file is never half-written).
- the command: `run` reports through the `out`/`err` callables it is given (commands/models.py
  prints); it never prints itself.

Only facts the checkpoint itself states are touched. License, gating, aliases, descriptions,
`trust_remote_code` and MoE active-parameter counts stay as written by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from aim_engine.catalog import config_facts
from aim_engine.catalog.model_file_patch import Change, apply_changes, diff, write_atomic
from aim_engine.errors import AimError

if TYPE_CHECKING:
    from aim_engine.cache.download import RetryPolicy

INDEX_FILE = config_facts.INDEX_FILE
SINGLE_FILE = "model.safetensors"
REQUEST_TIMEOUT = 30.0   # seconds per request (huggingface_hub's session has no timeout of its own)
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

Path_ = tuple  # a key path inside a model document, e.g. ("attention", "heads") or ("variants", 0, "weights_bytes")



# ------------------------------------------------------------------------------------------ facts


def facts_from_config(config: Mapping[str, Any]) -> dict[Path_, Any]:
    """The model-file facts config.json states, keyed by path, read by the one config.json reader
    (`catalog.config_facts`); a model_type outside its table is an error here: fetch-cards writes
    the catalog and does not guess."""
    return config_facts.read(config, "config.json", known_only=True).paths()


def card_facts(config: Mapping[str, Any], weights_bytes: int | None) -> dict[Path_, Any]:
    """All facts of one checkpoint: config facts plus the weights' byte total.

    For an unquantized checkpoint stored in one 16/32-bit dtype, the parameter count is exactly
    total_size / bytes-per-value, so it is checked too (and `active` with it for dense models).
    """
    facts = facts_from_config(config)
    if weights_bytes is not None:
        facts[("weights_bytes",)] = weights_bytes
        width = DTYPE_BYTES.get(facts[("native_dtype",)] or "")
        if width and not config.get("quantization_config") and weights_bytes % width == 0:
            facts[("parameters", "total")] = weights_bytes // width
            if ("moe", "experts") not in facts:
                facts[("parameters", "active")] = weights_bytes // width
    return facts


# ------------------------------------------------------------------------------------- fetch (edge)


@dataclass(frozen=True)
class Card:
    repo_id: str
    config: dict[str, Any] | None       # None when only the weights were asked for
    weights_bytes: int | None           # metadata.total_size (or tensor bytes of a single file)
    source: str                         # which file the byte total came from


def _failure(exc: BaseException, repo_id: str, filename: str, revision: str, settings: Any) -> AimError:
    """A failed read as the one hub-error translator words it (`cache.download.translate`, the
    cache's and the planner's too); only a file the repository lacks is worded here."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from aim_engine.cache.download import endpoint_of, http_status, translate

    missing = isinstance(exc, EntryNotFoundError) or (
        http_status(exc) == 404 and not isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)))
    if missing:
        return AimError(f"{repo_id} has no {filename} on {endpoint_of(settings)} (HTTP 404)",
                        hint="is it a model repository with transformers weights?")
    return translate(exc, settings, repo_id, revision, filename)


def fetch_card(repo_id: str, settings: Any, revision: str = "main", *, with_config: bool = True,
               policy: "RetryPolicy | None" = None, sleep: Callable[[float], None] = time.sleep) -> Card:
    """Read config.json and the safetensors byte total of `repo_id` from the hub.

    Files are read with huggingface_hub's own HTTP session, URL builder, headers and error mapping
    (`GET {endpoint}/{repo}/resolve/{revision}/{file}`, redirects followed), but without
    `hf_hub_download`: two small JSON files need no cache, and its internal HEAD retries (5 x
    Retry-After + 1 s) would multiply with ours. The one retry policy of every hub call
    (`cache.download.with_retries`: 408/429/5xx and connection failures, exponential backoff,
    `Retry-After` honoured) applies, and failures are worded by the one translator.
    A repo without an index (a single `model.safetensors`) is measured from that file's header
    (a ranged read of a few KB, not a download).
    """
    if getattr(settings, "offline", False):
        raise AimError("fetch-cards needs the Hugging Face hub but AIM_OFFLINE is set", "unset AIM_OFFLINE")
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    from aim_engine.cache.download import RetryPolicy, endpoint_of, with_retries
    from aim_engine.logs import get_logger

    endpoint = endpoint_of(settings)
    token: str | bool = settings.hf_token or False   # False: never fall back to a token stored on disk
    policy = policy or RetryPolicy()
    log = get_logger("aim_engine.catalog.cards", model=repo_id)
    filename = "config.json"

    def read_json(name: str) -> Any:
        url = hf_hub_url(repo_id, name, revision=revision, endpoint=endpoint)

        def get() -> Any:
            response = get_session().get(url, headers=build_hf_headers(token=token, library_name="aim-engine"),
                                         timeout=REQUEST_TIMEOUT)
            hf_raise_for_status(response)
            try:
                return response.json()
            except ValueError:
                raise config_facts.ConfigError(f"{url} did not answer JSON for {name}",
                                               hint="check HF_ENDPOINT: it must be the hub or a mirror") from None

        return with_retries(get, policy, f"{repo_id}/{name}", log, sleep=sleep)

    try:
        config = read_json(filename) if with_config else None
        try:
            filename = INDEX_FILE
            index = read_json(INDEX_FILE)
            return Card(repo_id, config, config_facts.total_size(index, f"{repo_id}/{INDEX_FILE}"), INDEX_FILE)
        except EntryNotFoundError:
            filename = SINGLE_FILE
            api = HfApi(endpoint=endpoint, token=token)
            meta = with_retries(lambda: api.parse_safetensors_file_metadata(repo_id, SINGLE_FILE, revision=revision),
                                policy, f"{repo_id}/{SINGLE_FILE}", log, sleep=sleep)
            total = sum(t.data_offsets[1] - t.data_offsets[0] for t in meta.tensors.values())
            return Card(repo_id, config, total, SINGLE_FILE)
    except AimError:
        raise
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear user error
        raise _failure(exc, repo_id, filename, revision, settings) from None


# ----------------------------------------------------------------------------------- the command


@dataclass
class FileReport:
    path: Path
    model_id: str
    changes: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def model_files(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        raise AimError(f"models directory {models_dir} does not exist", "pass --models-dir DIR")
    from aim_engine.catalog.loader import yaml_files

    return yaml_files(models_dir)     # the files the catalog itself reads, in its order


def _matches(doc: Mapping[str, Any], name: str) -> bool:
    names = [doc.get("model_id"), doc.get("huggingface_id"), doc.get("slug"), *(doc.get("aliases") or []),
             *(v.get("huggingface_id") for v in doc.get("variants") or [] if isinstance(v, Mapping))]
    return name.lower() in {str(n).lower() for n in names if n}


def check_file(path: Path, settings: Any, fetch: Callable[..., Card] = fetch_card) -> tuple[FileReport, str]:
    """Fetch the cards of one model file (the model and its variants); return the report and new text."""
    import yaml

    text = path.read_text(encoding="utf-8")
    doc = yaml.safe_load(text) or {}
    model_id = str(doc.get("huggingface_id") or doc.get("model_id") or path.stem)
    report = FileReport(path, model_id)
    facts: dict[Path_, Any] = {}
    try:
        card = fetch(model_id, settings)
        facts.update(card_facts(card.config or {}, card.weights_bytes))
    except AimError as exc:
        report.errors.append(str(exc))
    for i, variant in enumerate(doc.get("variants") or []):
        if not isinstance(variant, Mapping) or not variant.get("huggingface_id"):
            continue
        try:
            vcard = fetch(str(variant["huggingface_id"]), settings, with_config=False)
            if vcard.weights_bytes is not None:
                facts[("variants", i, "weights_bytes")] = vcard.weights_bytes
        except AimError as exc:
            report.errors.append(str(exc))
    report.changes = diff(doc, facts)
    return report, apply_changes(text, report.changes) if report.changes else text


def run(models_dir: Path, settings: Any, *, check: bool, model: str | None = None,
        out: Callable[[str], None], err: Callable[[str], None],
        fetch: Callable[..., Card] = fetch_card) -> int:
    """fetch-cards over a models directory: update files (or, with `check`, report drift)."""
    import yaml

    files = model_files(models_dir)
    if model:
        files = [p for p in files if _matches(yaml.safe_load(p.read_text(encoding="utf-8")) or {}, model)]
        if not files:
            raise AimError(f"no model file in {models_dir} matches {model!r}",
                           "give a model id, slug, alias or variant id from a models/*.yaml file")
    drift = 0
    failures: list[str] = []
    for path in files:
        report, new_text = check_file(path, settings, fetch)
        failures.extend(report.errors)
        for error in report.errors:
            err(f"{path.name}: error: {error}")
        if not report.changes:
            if not report.errors:
                out(f"{path.name}: in sync with {report.model_id}")
            continue
        drift += 1
        verb = "differs from the hub" if check else "updated from the hub"
        out(f"{path.name}: {verb} ({report.model_id}):")
        for change in report.changes:
            out(f"  {change.describe()}")
        if not check:
            write_atomic(path, new_text)
    if failures:
        raise AimError(f"could not fetch {len(failures)} model card(s); see the errors above",
                       "set HF_TOKEN for gated models; check HF_ENDPOINT")
    if check and drift:
        out(f"{drift} model file(s) out of sync; run `aim-engine models fetch-cards` to update them")
        return 1
    return 0
