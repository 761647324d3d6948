"""The one masking pass: every channel the agent writes to goes through this module.

Channels and where they call it:
- stdout/stderr of every command: `cli.main` (and `aim-recipe-selector`) wrap both streams in
  `MaskingStream` for the whole run, so text, JSON, error messages and anything a library prints
  are masked line by line, whatever produced them;
- structured output (`plan --json`, `/status`'s state file, log events, Prometheus labels):
  `mask()` over the whole document before it is written, so a secret is masked by its key even
  where no text rule would recognise its value;
- argv shown to people: `mask_argv()` (the value after `--api-key` is a secret too).

The rules, applied together (docs/inputs.md lists them for users):
1. values of keys, variables and flags whose name says secret: ends in TOKEN, KEY (`api_key`,
   `--api-key`, `KEY`, `APIKEY`), SECRET, PASSWORD/PASSWD, CREDENTIAL(S), SIGNATURE/SIG,
   AUTH/AUTHORIZATION (not counts such as `--max-tokens` or `…-per-token`);
2. the same in text: `NAME=value` (a flag `--api-key=sk-…`, a variable `HF_TOKEN=…`, a URL query
   `?token=…&sig=…`);
3. URL credentials: `scheme://user:password@host` -> `scheme://***@host`;
4. `Bearer …`/`Basic …` authorization values, and anything shaped like a Hugging Face token
   (`hf_` + 20 or more letters and digits);
5. the exact values of secrets seen anywhere (secret-named environment variables, secret flags
   in AIM_ENGINE_ARGS, URL passwords and query tokens: `remember()`), wherever they appear as
   substrings — 6 characters or longer, since short values would mask ordinary words.

Stdlib only, and cheap to import: the probe process and the boot path import it.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any, Iterable, Mapping, TextIO

MASK = "***"
MIN_SUBSTRING = 6     # shorter secret values are masked by name only (rule 1-2), not as substrings

_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
_SECRET_NAME = re.compile(r"(TOKEN|_KEY|^KEY|APIKEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?|SIGNATURE|"
                          r"_SIG|^SIG|_AUTH|^AUTH|AUTHORIZATION)$", re.IGNORECASE)
# Names that end like a secret but hold counts or switches (engine flags such as
# SGLang's --kt-max-deferred-experts-per-token, vLLM's --allow-credentials).
_NOT_SECRET = re.compile(r"(_PER_TOKEN|_FIRST_TOKEN|_TO_TOKEN|_LAST_TOKEN|ALLOW_CREDENTIALS)$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@?#'\"]+)@")
# NAME=value, where NAME may be a flag (--api-key), a variable (HF_TOKEN) or a query key (token).
_ASSIGNMENT = re.compile(r"(?P<name>(?<![\w.-])-{0,2}[A-Za-z_][\w.-]*)=(?P<quote>['\"]?)(?P<value>[^\s&#;,'\"\\})\]]+)")
_AUTH_HEADER = re.compile(r"\b(?P<kind>Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})")

_remembered: set[str] = set()


def is_secret_name(name: str) -> bool:
    """True for names like HF_TOKEN, AWS_SECRET_ACCESS_KEY, api_key, --api-key, password."""
    normalized = str(name).strip().lstrip("-").replace("-", "_").replace(".", "_")
    return bool(_SECRET_NAME.search(normalized)) and not _NOT_SECRET.search(normalized)


def remember(*values: Any) -> None:
    """Mask these values as substrings from now on, wherever they appear (rule 5). Called for
    secrets found in settings (secret flags in AIM_ENGINE_ARGS, the HF_ENDPOINT password)."""
    for value in values:
        if isinstance(value, (list, tuple)):
            remember(*value)
        elif isinstance(value, Mapping):
            remember(*value.values())
        elif value not in (None, True, False):
            text = str(value)
            if len(text) >= MIN_SUBSTRING:
                _remembered.add(text)


def remember_secrets_in(value: Any, key: str | None = None) -> None:
    """Remember every value held under a secret-named key of `value`, and the credentials of
    every URL in it (a JSON object such as AIM_ENGINE_ARGS, or one string)."""
    if key is not None and is_secret_name(key):
        remember(value)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            for match in _ASSIGNMENT.finditer(str(k)):    # a key such as "--api-key=sk-…"
                if is_secret_name(match["name"]):
                    remember(match["value"])
            remember_secrets_in(v, str(k))
    elif isinstance(value, (list, tuple)):
        for item in value:
            remember_secrets_in(item)
    elif isinstance(value, str):
        for match in _URL_USERINFO.finditer(value):
            userinfo = match["userinfo"]
            remember(userinfo.partition(":")[2] or userinfo)
        for match in _ASSIGNMENT.finditer(value):
            if is_secret_name(match["name"]):
                remember(match["value"])


def forget_remembered() -> None:
    """Drop what `remember()` collected (tests that parse many settings in one process)."""
    _remembered.clear()


def secret_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """Values worth masking as substrings: secret-named variables of `environ` (default: the
    process environment) plus everything `remember()`ed; short values would mask too much."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_SUBSTRING}
    return frozenset(found | _remembered)


def _mask_assignment(match: re.Match[str]) -> str:
    return f"{match['name']}={match['quote']}{MASK}" if is_secret_name(match["name"]) and match["value"] != MASK else match[0]


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every rule applied (known values, tokens, URL credentials, NAME=value)."""
    if not isinstance(text, str):
        text = str(text)
    for value in sorted({*secrets, *_remembered}, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, MASK)
    text = _HF_TOKEN.sub(MASK, text)
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if "=" in text:
        text = _ASSIGNMENT.sub(_mask_assignment, text)
    if " " in text:
        text = _AUTH_HEADER.sub(lambda m: f"{m['kind']} {MASK}", text)
    return text


def mask(value: Any, secrets: Iterable[str] | None = None, key: str | None = None) -> Any:
    """`value` with secrets masked, recursing through dicts (keys too), lists and tuples."""
    known = secret_values() if secrets is None else frozenset(secrets)
    if key is not None and is_secret_name(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, str):
        return mask_text(value, known)
    if isinstance(value, Mapping):
        return {(mask_text(k, known) if isinstance(k, str) else k): mask(v, known, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask(v, known) for v in value)
    return value


def mask_argv(argv: Iterable[str], secrets: Iterable[str] | None = None) -> list[str]:
    """Mask an argv, including the value that follows a secret-named flag (`--api-key X`)."""
    known = secret_values() if secrets is None else frozenset(secrets)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("--"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        name, eq, _ = arg.partition("=")
        if arg.startswith("-") and is_secret_name(name):
            out.append(f"{name}={MASK}" if eq else arg)
            hide_next = not eq
            continue
        out.append(mask_text(arg, known))
    return out


class MaskingStream(io.TextIOBase):
    """A text stream that masks every line before it reaches `stream`.

    Lines are held until their newline and a flush (or BATCH characters of complete lines), so
    a secret is seen whole however the writer splits its output (`json.dump` writes a document
    in hundreds of small pieces; masking them in one pass costs a tenth of masking each line).
    `print(..., flush=True)` and every log line flush, so nothing waits long."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._pending = ""
        try:    # a terminal gets each line at once, as Python's own line buffering gives it
            self._batch = 1 if stream.isatty() else self.BATCH
        except (AttributeError, ValueError, OSError):
            self._batch = self.BATCH

    BATCH = 8192     # complete lines are masked together once this much is pending (or on flush)

    def write(self, text: str) -> int:
        self._pending += text
        if len(self._pending) >= self._batch and "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            self.stream.write(mask_text(lines + "\n", secret_values()))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self.stream.write(mask_text(pending, secret_values()))
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "errors", None)


class masked_std_streams:
    """`with masked_std_streams():` — sys.stdout and sys.stderr go through `MaskingStream`
    until the block ends (then both are flushed and restored)."""

    def __enter__(self) -> "masked_std_streams":
        import sys

        self._saved = (sys.stdout, sys.stderr)
        if not isinstance(sys.stdout, MaskingStream):
            sys.stdout = MaskingStream(sys.stdout)     # type: ignore[assignment]
        if not isinstance(sys.stderr, MaskingStream):
            sys.stderr = MaskingStream(sys.stderr)     # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        import sys

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = self._saved
