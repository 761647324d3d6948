"""Paths built from cache content stay inside the cache: the one check before every write or removal.

The cache volume is shared by every pod, so whoever can write to it controls what the agent reads
there: completeness markers, refs, holder files, folder and file names. Any of them can name a
path (`files[].path`, `commit`, a blob hash, a ref's content) or replace a folder with a symlink.
None of that may make the agent remove or write a file outside the cache, or hang reading one.

Two layers, both here so there is one rule and one wording:

- **Syntax** (`name`, `relative`): what a value taken from the cache may look like before it is
  joined to a path. One path component (a commit, a blob hash) or a relative path of components
  (a file of a snapshot, a ref such as `refs/pr/1`): no `..`, `.` or empty part, not absolute, no
  NUL or other control character, at most `NAME_MAX` bytes per part and `PATH_MAX` in all.
- **Place** (`inside`, `check`): the joined path, with its folders resolved (symlinks followed),
  must be inside the folder it was meant for, and that folder inside the cache root (the root
  itself may be a symlink: a mounted volume often is). The last component is not followed for a
  removal or a rename onto it (neither follows it), but is when the caller reads through it.

`read_bounded` is the one reader of small cache files (markers, refs, holder files): regular
files only (a FIFO or /dev/zero never blocks or floods it), at most `limit` bytes.

The checks resolve and then act, so a writer racing the agent between the check and the removal
could still swap a folder; see docs/cache.md ("Confinement") for that limit. Stdlib only: the
probe process imports `atomic`, which calls this.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aim_engine.errors import AimError

NAME_MAX = 255         # bytes in one path component (Linux NAME_MAX)
PATH_MAX = 4096        # bytes in a relative path taken from the cache (Linux PATH_MAX)
SMALL_FILE = 1 << 20   # default bound for reading a small cache file (ref, holder file)
SHOWN = 80             # characters of a bad value echoed in a message

RULE_NAME = ("one path component: not empty, not '.' or '..', no '/', no NUL or control character, "
             f"at most {NAME_MAX} bytes")
RULE_RELATIVE = ("a relative path: no leading '/', no '..', '.' or empty part, no NUL or control character, "
                 f"at most {NAME_MAX} bytes per part and {PATH_MAX} in all")


class UnsafePath(AimError):
    """A value from the cache (or a cache path) that would reach outside its folder: refused."""


def shown(value: object) -> str:
    """`value` as a message shows it: repr'd, cut to SHOWN characters with its length said."""
    text = repr(value)
    if len(text) <= SHOWN:
        return text
    length = f"{len(value)} characters" if isinstance(value, (str, bytes)) else "long"
    return f"{text[:SHOWN]}... ({length})"


def _bad_part(part: str) -> str | None:
    if part in ("", ".", ".."):
        return f"has a {part!r} part" if part else "has an empty part"
    if any(ord(c) < 32 or ord(c) == 127 for c in part):
        return "holds a NUL or control character"
    try:
        size = len(part.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid text (lone surrogate)"
    if size > NAME_MAX:
        return f"has a part of {size} bytes (file name too long)"
    return None


def problem_with_name(value: object) -> str | None:
    """Why `value` is not a single safe path component, or None."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not text"
    if "/" in value:
        return "holds a '/'"
    return _bad_part(value)


def problem_with_relative(value: object) -> str | None:
    """Why `value` is not a safe relative path (a file inside a snapshot, a ref name), or None."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not text"
    if value.startswith("/"):
        return "is absolute"
    if len(value.encode("utf-8", "surrogatepass")) > PATH_MAX:
        return f"is longer than {PATH_MAX} bytes"
    for part in value.split("/"):
        bad = _bad_part(part)
        if bad:
            return bad
    return None


def name(value: object, *, what: str, source: str) -> str:
    """`value` if it is one safe path component, else UnsafePath naming `source` and `what`."""
    bad = problem_with_name(value)
    if bad:
        raise UnsafePath(f"{source}: {what} {shown(value)} {bad}; refused (allowed: {RULE_NAME})")
    return value  # type: ignore[return-value]


def relative(value: object, *, what: str, source: str) -> str:
    """`value` if it is a safe relative path, else UnsafePath naming `source` and `what`."""
    bad = problem_with_relative(value)
    if bad:
        raise UnsafePath(f"{source}: {what} {shown(value)} {bad}; refused (allowed: {RULE_RELATIVE})")
    return value  # type: ignore[return-value]


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check(path: Path, *, root: Path, folder: Path | None = None, target: Path | None = None, what: str = "path",
          source: str | None = None) -> Path:
    """`path` if, with symlinks resolved, its folder is inside `folder` (default `root`) and `folder`
    inside `root`; else UnsafePath. Its last component is not followed (an unlink or a rename onto
    it does not follow it either) unless `target` is given: then what it points to must be inside
    `target` (for reads through it: a snapshot entry must point into its model's folder)."""
    folder = root if folder is None else folder
    try:
        real_root = os.path.realpath(root)
        real_folder = os.path.realpath(folder)
        real_parent = os.path.realpath(path.parent)
        real_target = os.path.realpath(target) if target is not None else None
        real = os.path.realpath(path) if target is not None else os.path.join(real_parent, path.name)
    except (OSError, ValueError) as exc:
        raise UnsafePath(f"cannot resolve {shown(str(path))}: {exc}") from None
    where = f" (from {source})" if source else ""
    hint = ("remove that symlink or file (or the whole model, with `aim-engine cache remove`); nothing outside the "
            "cache was touched")
    for name_, real_name in ((folder, real_folder), (target, real_target)):
        if name_ is not None and real_name is not None and not _within(real_name, real_root):
            raise UnsafePath(f"refusing to use {path}{where}: {name_} resolves to {real_name}, outside the cache at "
                             f"{root} (a symlink in the cache points out of it)", hint=hint)
    if not _within(real_parent, real_folder):
        raise UnsafePath(f"refusing to use {path}{where}: its folder resolves to {real_parent}, outside {folder}",
                         hint=hint)
    if real_target is not None and (not _within(real, real_target) or real == real_target):
        raise UnsafePath(f"refusing to use {path}{where}: the {what} points to {real}, outside {target}", hint=hint)
    return path


def inside(folder: Path, value: object, *, root: Path, what: str, source: str, nested: bool = False,
           target: Path | None = None) -> Path:
    """`folder`/`value` for a `value` read from the cache (a commit, a blob hash, a snapshot file,
    a ref name), checked by syntax (`name`, or `relative` with `nested`) and by place (`check`)."""
    text = relative(value, what=what, source=source) if nested else name(value, what=what, source=source)
    return check(folder / text, root=root, folder=folder, target=target, what=what, source=source)


def read_bounded(path: Path, limit: int = SMALL_FILE, *, follow: bool = True) -> bytes:
    """The bytes of a small cache file: OSError unless it is a regular file of at most `limit` bytes.

    Opened non-blocking (a FIFO planted in its place never blocks the agent) and checked with fstat
    before reading, so a symlink to /dev/zero or a huge file is refused, not read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{path} holds {st.st_size} bytes, more than the {limit} allowed")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 16, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise OSError(f"{path} grew past the {limit} bytes allowed")
        return b"".join(chunks)
    finally:
        os.close(fd)
