"""The network edge: resolve a revision, list files, fetch one file — with retries and clear errors.

Everything here imports huggingface_hub lazily; nothing on the warm path calls into this module.

What huggingface_hub already retries (2.x): the tree/pagination calls; per-file HEADs on
408/429/5xx and connection errors (after a first quick try); GETs on 408/429 and, for dropped
connections mid-body, a resume with `Range` (5 tries). What it does not: `model_info`, and GETs
answered 5xx. So every call here runs in a bounded loop with exponential backoff that honours
`Retry-After`, around whatever the library does.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from aim_engine import redact
from aim_engine.cache.select import RemoteFile
from aim_engine.errors import AimError

DEFAULT_ENDPOINT = "https://huggingface.co"
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6          # tries per call, including the first
    base: float = 1.0          # first backoff, doubled each time
    max_wait: float = 30.0
    max_retry_after: float = 120.0


class HubError(AimError):
    pass


class Cancelled(BaseException):
    """The warm-up is being abandoned (a signal, or another file failed): a worker thread stops
    at its next chunk or retry instead of finishing its file. A BaseException, so neither the
    retry loop nor huggingface_hub's `except Exception` treat it as a failure to retry."""


def interruptible_sleep(stop: Any) -> Callable[[float], None]:
    """A backoff sleep that ends (raising `Cancelled`) as soon as `stop` (a threading.Event) is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise Cancelled()

    return sleep


def endpoint_of(settings: Any) -> str:
    return (settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")


def _token(settings: Any) -> str | bool:
    # False, not None: huggingface_hub would otherwise look for a token of its own (env, token file).
    return settings.hf_token or False


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (`__cause__`, else `__context__`), outermost first, no cycles."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not s for s in seen) and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def underlying(exc: BaseException) -> BaseException:
    """The error that really happened. huggingface_hub 2.x wraps a failed metadata HEAD (a 403,
    a 404 without the hub's error code, a refused connection) in `LocalEntryNotFoundError`
    ("check your connection"), whatever the HTTP answer was; the cause says what it was."""
    import httpx2
    from huggingface_hub import errors as hf

    for cause in _chain(exc):
        if _status(cause) is not None or isinstance(cause, (httpx2.TransportError, hf.FileMetadataError,
                                                              hf.OfflineModeIsEnabled)):
            return cause
    return exc


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind `exc` (its own, or that of the error it wraps), if there was an answer."""
    return _status(underlying(exc))


def describe(exc: BaseException, secrets: Any = ()) -> tuple[BaseException, str]:
    """(the error that really happened, its first line with `secrets` masked) for a message."""
    cause = underlying(exc)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return cause, redact.mask_text(lines[0] if lines else type(cause).__name__, secrets)


def retry_after(exc: BaseException) -> float | None:
    response = getattr(underlying(exc), "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, network trouble, short reads. Never a
    401/403/404: the answer will not change, and a retry storm only delays the clear error."""
    import httpx2
    from huggingface_hub import errors as hf

    if isinstance(exc, (hf.RepositoryNotFoundError, hf.RevisionNotFoundError, hf.RemoteEntryNotFoundError,
                        hf.OfflineModeIsEnabled)):
        return False
    cause = underlying(exc)
    status = _status(cause)
    if status is not None:
        return status in RETRY_STATUS
    if isinstance(cause, (hf.FileMetadataError, hf.OfflineModeIsEnabled)):
        return False    # the endpoint answered, but not like a hub: a configuration problem
    if isinstance(cause, httpx2.TransportError):
        return True
    if isinstance(exc, hf.LocalEntryNotFoundError):
        return True     # the HEAD failed for an unrecorded reason and nothing is cached yet
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return True
    return False


def translate(exc: BaseException, settings: Any, repo_id: str, revision: str, path: str | None = None) -> AimError:
    """A user-facing error for a failed hub call (the token is never part of it). `path` is the
    file being fetched, when the call was for one file."""
    from huggingface_hub import errors as hf

    endpoint = endpoint_of(settings)
    cause, detail = describe(exc, [settings.hf_token] if settings.hf_token else [])
    what = f"{repo_id}/{path}" if path else repo_id
    if isinstance(exc, hf.GatedRepoError):
        why = "HF_TOKEN is not set" if not settings.hf_token else "the account of HF_TOKEN has no access to it"
        return HubError(f"{repo_id} is a gated model and {why} ({endpoint})",
                        hint="accept the model's terms on its Hugging Face page, then set HF_TOKEN to a read token "
                             "of that account")
    if isinstance(exc, hf.RevisionNotFoundError):
        return HubError(f"revision {revision!r} of {repo_id} does not exist on {endpoint}",
                        hint="set AIM_MODEL_REVISION to a branch, tag or commit of the model (default: main)")
    if isinstance(exc, hf.RepositoryNotFoundError):
        private = " (or it is private and HF_TOKEN has no access)" if settings.hf_token else \
            " (or it is private/gated and HF_TOKEN is not set)"
        return HubError(f"model {repo_id!r} was not found on {endpoint}{private}",
                        hint="check AIM_MODEL_ID: a Hugging Face id like org/name, a catalog alias, or a local "
                             "directory")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return HubError(f"a file of {repo_id}@{revision} disappeared from {endpoint} during the download: {detail}",
                        hint="retry; if the revision is a branch that was just updated, pin AIM_MODEL_REVISION")
    if isinstance(exc, hf.OfflineModeIsEnabled) or isinstance(cause, hf.OfflineModeIsEnabled):
        return HubError(f"cannot download {repo_id}: HF_HUB_OFFLINE is set in the agent's environment",
                        hint="use AIM_OFFLINE=1 instead (the agent sets HF_HUB_OFFLINE for the engine), or unset "
                             "HF_HUB_OFFLINE to allow the download")
    status = _status(cause)
    if status == 401:
        if not settings.hf_token:
            return HubError(f"{endpoint} requires authentication for {what} (HTTP 401) and HF_TOKEN is not set",
                            hint="the model is private or gated: set HF_TOKEN to a read token of an account with "
                                 "access")
        return HubError(f"{endpoint} rejected HF_TOKEN (HTTP 401: invalid or expired token) for {what}",
                        hint="create a new read token on huggingface.co/settings/tokens and set HF_TOKEN")
    if status == 403:
        return HubError(f"{endpoint} refused access to {what}@{revision} (HTTP 403): {detail}",
                        hint="the model may be gated or private: accept its terms on its Hugging Face page and "
                             "check that HF_TOKEN's account may read it")
    if status == 404:
        return HubError(f"{endpoint} answered HTTP 404 (not found) for {what}@{revision}: {detail}",
                        hint="check AIM_MODEL_ID and AIM_MODEL_REVISION; if HF_ENDPOINT is a mirror or proxy, "
                             "check that it serves this model")
    if status is not None:
        return HubError(f"{endpoint} answered HTTP {status} for {what} after retries: {detail}",
                        hint="the hub may be down or rate-limiting; retry later, or pre-warm the cache and set "
                             "AIM_OFFLINE=1")
    if isinstance(cause, hf.FileMetadataError):
        return HubError(f"{endpoint} does not answer like a Hugging Face hub for {what}: {detail}",
                        hint="check HF_ENDPOINT (it must point at the hub or a hub-compatible mirror) and any "
                             "proxy in between")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                                                  errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP):
        where = exc.filename or settings.hub_cache
        return HubError(f"cannot write {what} into the model cache: {where}: {exc.strerror or exc}",
                        hint="the volume behind AIM_CACHE_PATH must be writable by the agent's user, and its "
                             "folders must be folders (remove a file or link that stands in the place of one)")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return HubError(f"the model cache ran out of disk space while downloading {repo_id}",
                        hint="grow the volume behind AIM_CACHE_PATH")
    return HubError(f"cannot reach {endpoint} to download {what}: {type(cause).__name__}: {detail}",
                    hint="check network access to the hub (HF_ENDPOINT, proxies), or pre-warm the cache with "
                         "`aim-engine download` and set AIM_OFFLINE=1")


def with_retries(call: Callable[[], T], policy: RetryPolicy, what: str, log: Any,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`, retrying transient failures with exponential backoff (honouring Retry-After)."""
    wait = policy.base
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= policy.attempts or not is_transient(exc):
                raise
            delay = retry_after(exc)
            delay = min(delay, policy.max_retry_after) if delay is not None else wait
            cause = underlying(exc)
            first = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
            log.warning("transient hub error, retrying", what=what, attempt=attempt, of=policy.attempts,
                        wait_s=round(delay, 2), error=f"{type(cause).__name__}: {first[:200]}")
            sleep(delay)
            wait = min(wait * 2, policy.max_wait)
    raise AssertionError("unreachable")


def api(settings: Any) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint_of(settings), token=_token(settings), library_name="aim-engine")


def resolve(settings: Any, repo_id: str, revision: str, policy: RetryPolicy, log: Any) -> tuple[str, list[RemoteFile]]:
    """(commit sha, every file with size and hashes) in one `model_info(files_metadata=True)` call."""
    hub = api(settings)
    info = with_retries(lambda: hub.model_info(repo_id, revision=revision, files_metadata=True), policy,
                        f"model_info {repo_id}@{revision}", log)
    if not info.sha:
        raise HubError(f"{endpoint_of(settings)} returned no commit for {repo_id}@{revision}")
    files = [RemoteFile(s.rfilename, int(s.size or 0), s.blob_id, s.lfs.sha256 if s.lfs else None)
             for s in (info.siblings or [])]
    source = f"{endpoint_of(settings)}'s listing of {repo_id}@{revision}"
    return checked_listing(info.sha, files, source)


_HEX = frozenset("0123456789abcdef")


def _hex(value: str | None, digits: int) -> bool:
    return value is None or (isinstance(value, str) and len(value) == digits and set(value) <= _HEX)


def checked_listing(commit: Any, files: list[RemoteFile], source: str) -> tuple[str, list[RemoteFile]]:
    """The hub's answer, refused when it names a path the cache cannot hold safely: the commit
    becomes a folder name, each file a path in the snapshot and its hash a blob name (a hostile
    mirror must not steer a write or a removal out of the cache)."""
    from aim_engine.confine import name, relative, shown

    name(commit, what="commit", source=source)
    for f in files:
        relative(f.path, what="file path", source=source)
        if not (_hex(f.sha256, 64) and _hex(f.blob_id, 40)):
            raise HubError(f"{source}: file {shown(f.path)} has a hash that is not hex "
                           f"(sha256 {shown(f.sha256)}, blob id {shown(f.blob_id)})")
        if f.size < 0:
            raise HubError(f"{source}: file {shown(f.path)} has a negative size {f.size}")
    return commit, files


def fetch(settings: Any, repo_id: str, commit: str, path: str, tqdm_class: type | None, policy: RetryPolicy,
          log: Any, on_failed_attempt: Callable[[], None] | None = None, stop: Any = None) -> str:
    """Download one file into the hub cache (huggingface_hub's blob + snapshot symlink layout).

    `on_failed_attempt` runs after each failed try (the caller un-counts that try's bytes).
    `stop` (a threading.Event): once set, no new try starts and a backoff wait ends at once.
    """
    from huggingface_hub import hf_hub_download

    def attempt() -> str:
        if stop is not None and stop.is_set():
            raise Cancelled()
        try:
            return hf_hub_download(repo_id, path, revision=commit, cache_dir=str(settings.hub_cache),
                                   endpoint=endpoint_of(settings), token=_token(settings), tqdm_class=tqdm_class,
                                   library_name="aim-engine")
        except BaseException:
            if on_failed_attempt is not None:
                on_failed_attempt()
            raise

    sleep = interruptible_sleep(stop) if stop is not None else time.sleep
    return with_retries(attempt, policy, f"{repo_id}/{path}", log, sleep=sleep)
