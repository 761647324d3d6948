"""Model cards: a checkpoint's `config.json` and safetensors index, mapped onto a model file.

`aim-engine models fetch-cards` keeps the facts in `models/*.yaml` equal to what the Hugging Face
hub publishes. The work splits into a pure core and a thin edge:

- pure: `facts_from_config` (the one config.json reader, `catalog.config_facts`, which planning
  a model from outside the catalog uses too), `card_facts`, `diff`, and `apply_changes`, which
  rewrites only the changed scalar values in the YAML text so comments and layout survive;
- edge: `fetch_card` (the real `huggingface_hub` client with an explicit `endpoint=`, because the
  library reads `HF_ENDPOINT` only once at import; retries with backoff on 429/5xx honouring
  `Retry-After`; gated and missing repos become an `AimError` naming the model, never the token),
  and `write_atomic` (temp file + rename: a model file is never half-written).

Only facts the checkpoint itself states are touched. License, gating, aliases, descriptions,
`trust_remote_code` and MoE active-parameter counts stay as written by hand.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from aim_engine.catalog import config_facts
from aim_engine.errors import AimError

INDEX_FILE = config_facts.INDEX_FILE
SINGLE_FILE = "model.safetensors"
RETRY_STATUSES = (429, 500, 502, 503, 504)
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


# -------------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    path: Path_
    old: Any
    new: Any
    present: bool          # the key is written in the file (else it is added)

    def describe(self) -> str:
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in self.path).replace(".[", "[")
        old = "(absent)" if not self.present else json.dumps(self.old)
        return f"{where}: {old} -> {json.dumps(self.new)}"


_ABSENT = object()


def _get(doc: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or part >= len(doc):
                return _ABSENT
            doc = doc[part]
        else:
            if not isinstance(doc, Mapping) or part not in doc:
                return _ABSENT
            doc = doc[part]
    return doc


def _same(path: Path_, old: Any, new: Any) -> bool:
    if old is _ABSENT:
        # Absent and null/zero mean the same for optional facts (no window; window on every layer).
        return new is None or (path[-1] in ("sliding_window_layers", "shared_experts") and new == 0)
    return old == new and isinstance(old, bool) == isinstance(new, bool)


def diff(doc: Mapping[str, Any], facts: Mapping[Path_, Any]) -> list[Change]:
    """Facts that differ from the document, in the document's key order where possible."""
    changes: list[Change] = []
    for path, new in facts.items():
        if path[0] == "moe" and _get(doc, ("moe",)) is _ABSENT and not facts.get(("moe", "experts")):
            continue
        old = _get(doc, path)
        if not _same(path, old, new):
            changes.append(Change(path, None if old is _ABSENT else old, new, old is not _ABSENT))
    return changes


# --------------------------------------------------------------------------- text-preserving update


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value)) if any(c in str(value) for c in ":#{}[],&*!|>'\"%@`") else str(value)


def _child(node: Any, part: Any) -> Any:
    import yaml

    if isinstance(part, int):
        return node.value[part] if isinstance(node, yaml.SequenceNode) and part < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == part:
                return value
    return None


def _last_end(node: Any) -> int:
    """Character index just after the last scalar written inside `node`."""
    import yaml

    if isinstance(node, yaml.MappingNode) and node.value:
        return _last_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value and node.flow_style is not True:
        return _last_end(node.value[-1])
    return node.end_mark.index


def apply_changes(text: str, changes: Sequence[Change]) -> str:
    """Rewrite only the changed values in `text`; keep every other byte (comments included).

    A present key has its scalar replaced in place (a trailing `# derived: ...` comment is dropped,
    since the value is now the published one). An absent key is added as a new line at the end of
    its parent mapping, indented like its siblings; an absent parent mapping is appended at the end.
    """
    import yaml

    root = yaml.compose(text)
    edits: list[tuple[int, int, str]] = []   # (start, end, replacement) on the original text
    appended: dict[str, list[str]] = {}
    for change in changes:
        node = root
        for part in change.path:
            node = _child(node, part) if node is not None else None
        if node is not None and isinstance(node, yaml.ScalarNode):
            start, end = node.start_mark.index, node.end_mark.index
            line_end = text.find("\n", end)
            line_end = len(text) if line_end < 0 else line_end
            rest = text[end:line_end]
            if "# derived" in rest:
                end = line_end
            edits.append((start, end, _scalar(change.new)))
            continue
        parent = root
        for part in change.path[:-1]:
            parent = _child(parent, part) if parent is not None else None
        key = change.path[-1]
        if isinstance(parent, yaml.MappingNode) and parent.value:
            indent = parent.value[0][0].start_mark.column
            at = text.find("\n", _last_end(parent))
            at = len(text) if at < 0 else at + 1
            edits.append((at, at, " " * indent + f"{key}: {_scalar(change.new)}\n"))
        elif len(change.path) == 2 and isinstance(change.path[0], str):
            appended.setdefault(change.path[0], []).append(f"  {key}: {_scalar(change.new)}")
        else:
            raise ValueError(f"cannot place {change.describe()} in the document")
    out = text
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out = out[:start] + new + out[end:]
    for block, lines in appended.items():
        out = out.rstrip("\n") + f"\n{block}:\n" + "\n".join(lines) + "\n"
    return out


def write_atomic(path: Path, text: str) -> None:
    """Replace a model file via a temp file and a rename, durably and keeping its permissions."""
    from aim_engine.atomic import write_text

    write_text(path, text, durable=True, keep_mode=True)


# ------------------------------------------------------------------------------------- fetch (edge)


@dataclass(frozen=True)
class Card:
    repo_id: str
    config: dict[str, Any] | None       # None when only the weights were asked for
    weights_bytes: int | None           # metadata.total_size (or tensor bytes of a single file)
    source: str                         # which file the byte total came from


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.base_delay * 2 ** (attempt - 1), self.max_delay)


def _retryable(exc: BaseException) -> tuple[bool, float | None]:
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, \
        RevisionNotFoundError

    from aim_engine.cache.download import http_status, retry_after

    if isinstance(exc, (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
        return False, None
    status = http_status(exc)
    if status is not None:
        return status in RETRY_STATUSES, retry_after(exc)
    # No HTTP answer at all (connection refused, reset, timeout): worth another try.
    transport = type(exc).__module__.split(".")[0] in ("httpx", "httpx2") and type(exc).__name__.endswith(
        ("Error", "Timeout"))
    return isinstance(exc, OSError) or transport, None


def with_retries(call: Callable[[], Any], policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[int, float, BaseException], None] | None = None) -> Any:
    """Run `call`, retrying 429/5xx and connection failures with backoff (Retry-After wins)."""
    attempt = 1
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised when final
            retry, retry_after = _retryable(exc)
            if not retry or attempt >= policy.attempts:
                raise
            wait = policy.delay(attempt, retry_after)
            if on_retry is not None:
                on_retry(attempt, wait, exc)
            sleep(wait)
            attempt += 1


def _friendly(exc: BaseException, repo_id: str, endpoint: str, has_token: bool = False) -> AimError:
    """A user-facing error for a failed fetch (names the model, never the token)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    from aim_engine.cache.download import http_status

    status = http_status(exc)
    if isinstance(exc, GatedRepoError) or status == 403:
        if not has_token:
            return AimError(f"{repo_id} is a gated model and HF_TOKEN is not set ({endpoint})",
                            "accept the model's terms on its hub page, then set HF_TOKEN to a token of that account")
        return AimError(f"{repo_id} is a gated model and the HF_TOKEN given has no access to it ({endpoint})",
                        "accept the model's terms on its hub page with the account that owns HF_TOKEN")
    server_message = str(getattr(exc, "server_message", "") or "")
    if status == 401 and has_token and "credentials" in server_message.lower():
        return AimError(f"{endpoint} refused HF_TOKEN (invalid credentials) while reading {repo_id}",
                        "create a new token on the hub and set HF_TOKEN to it")
    if isinstance(exc, RepositoryNotFoundError) or status == 401:
        return AimError(f"{repo_id} was not found or needs authentication on {endpoint} (HTTP {status or 401})",
                        "check the model id; for a gated or private model set HF_TOKEN")
    if isinstance(exc, RevisionNotFoundError):
        return AimError(f"{repo_id} has no such revision on {endpoint}")
    if status == 404:
        return AimError(f"{repo_id} has no config.json on {endpoint} (HTTP 404)",
                        "is it a model repository with transformers weights?")
    if status in RETRY_STATUSES:
        return AimError(f"{repo_id}: {endpoint} kept answering HTTP {status} after retries",
                        "try again later (rate limit or hub outage)")
    return AimError(f"{repo_id}: could not read its model card from {endpoint}: {type(exc).__name__}",
                    "check HF_ENDPOINT and the network (fetch-cards needs the hub)")


def fetch_card(repo_id: str, settings: Any, revision: str = "main", *, with_config: bool = True,
               policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep) -> Card:
    """Read config.json and the safetensors byte total of `repo_id` from the hub.

    Files are read with huggingface_hub's own HTTP session, URL builder, headers and error mapping
    (`GET {endpoint}/{repo}/resolve/{revision}/{file}`, redirects followed), but without
    `hf_hub_download`: two small JSON files need no cache, and its internal HEAD retries (5 x
    Retry-After + 1 s) would multiply with ours. One retry policy (`with_retries`) applies.
    A repo without an index (a single `model.safetensors`) is measured from that file's header
    (a ranged read of a few KB, not a download).
    """
    if getattr(settings, "offline", False):
        raise AimError("fetch-cards needs the Hugging Face hub but AIM_OFFLINE is set", "unset AIM_OFFLINE")
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    from aim_engine.cache.download import endpoint_of, http_status

    endpoint = endpoint_of(settings)
    token: str | bool = settings.hf_token or False   # False: never fall back to a token stored on disk

    def announce(attempt: int, wait: float, exc: BaseException) -> None:
        status = http_status(exc)
        why = f"HTTP {status}" if status else type(exc).__name__
        print(f"{repo_id}: {why}, retrying in {wait:g}s (attempt {attempt + 1}/{policy.attempts})", file=sys.stderr)

    def read_json(filename: str) -> dict[str, Any]:
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)

        def get() -> dict[str, Any]:
            response = get_session().get(url, headers=build_hf_headers(token=token, library_name="aim-engine"),
                                         timeout=REQUEST_TIMEOUT)
            hf_raise_for_status(response)
            return response.json()

        return with_retries(get, policy, sleep, announce)

    try:
        config = read_json("config.json") if with_config else None
        try:
            index = read_json(INDEX_FILE)
            total = (index.get("metadata") or {}).get("total_size")
            return Card(repo_id, config, int(total) if total is not None else None, INDEX_FILE)
        except EntryNotFoundError:
            api = HfApi(endpoint=endpoint, token=token)
            meta = with_retries(lambda: api.parse_safetensors_file_metadata(repo_id, SINGLE_FILE, revision=revision),
                                policy, sleep, announce)
            total = sum(t.data_offsets[1] - t.data_offsets[0] for t in meta.tensors.values())
            return Card(repo_id, config, total, SINGLE_FILE)
    except AimError:
        raise
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear user error
        raise _friendly(exc, repo_id, endpoint, has_token=bool(settings.hf_token)) from None


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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run(models_dir: Path, settings: Any, *, check: bool, model: str | None = None,
        out: Callable[[str], None] = print, err: Callable[[str], None] = _stderr,
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
