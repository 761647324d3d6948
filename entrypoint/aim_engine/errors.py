"""User-facing errors.

Anything a user can cause (a bad variable, a missing model, a recipe that does not fit) is an
`AimError`: the CLI prints its message and hint on one or two lines and exits with its code,
never a traceback. Bugs stay ordinary exceptions so they do show a traceback.
"""

from __future__ import annotations

from typing import Any

ECHO_LIMIT = 80     # characters of a user's value quoted in a message (a 5,000-character id is cut)


def shown(value: Any, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)` for a message, cut to about `limit` characters with the full length noted:
    an error quotes what the user wrote, but never floods the terminal with it."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    head = text[: limit - 10]
    return f"{head!r}… ({len(text)} characters)"


def os_error_text(exc: OSError) -> str:
    """An OSError as a user reads it: what failed and on which file (`[Errno 36] File name too
    long` alone does not say which of the agent's paths was too long)."""
    what = exc.strerror or type(exc).__name__
    files = [f for f in (exc.filename, getattr(exc, "filename2", None)) if f]
    return f"{what}: " + " -> ".join(shown(str(f), 200) for f in files) if files else f"{what} ({exc})"


class AimError(Exception):
    """An error the user can fix; `hint` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SettingsError(AimError):
    """One or more AIM_* variables hold a value we cannot use."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        text = "invalid environment:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text)
