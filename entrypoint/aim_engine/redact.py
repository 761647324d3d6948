"""Masking secrets wherever they might surface: logs, argv, environment dumps, status pages.

Three rules, applied together:
- anything shaped like a Hugging Face token (`hf_` followed by 20+ token characters);
- the value of any key or variable whose name ends in TOKEN, KEY, SECRET or PASSWORD;
- the exact values of such variables in the process environment, wherever they appear as
  substrings (a token pasted into a URL or an error message is still caught).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

MASK = "***"
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
_SECRET_NAME = re.compile(r"(TOKEN|_KEY|^KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True for names like HF_TOKEN, AWS_SECRET_ACCESS_KEY, api_key, password."""
    return bool(_SECRET_NAME.search(name.replace("-", "_")))


def secret_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """Values of secret-named variables worth masking (short values would mask too much)."""
    env = os.environ if environ is None else environ
    return frozenset(v for k, v in env.items() if is_secret_name(k) and len(v) >= 6)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    return _HF_TOKEN.sub(MASK, text)


def mask(value: Any, secrets: Iterable[str] | None = None, key: str | None = None) -> Any:
    """Return `value` with secrets masked, recursing through dicts, lists and tuples."""
    known = secret_values() if secrets is None else frozenset(secrets)
    if key is not None and is_secret_name(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, str):
        return mask_text(value, known)
    if isinstance(value, Mapping):
        return {k: mask(v, known, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask(v, known) for v in value)
    return value


def mask_argv(argv: Iterable[str], secrets: Iterable[str] | None = None) -> list[str]:
    """Mask an argv, including the value that follows a secret-named flag (`--api-key X`)."""
    known = secret_values() if secrets is None else frozenset(secrets)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if arg.startswith("-") and is_secret_name(name.lstrip("-")):
            out.append(f"{name}={MASK}" if eq else arg)
            hide_next = not eq
            continue
        out.append(mask_text(arg, known))
    return out
