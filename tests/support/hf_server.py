"""A local Hugging Face Hub-compatible HTTP server for tests (real HTTP on 127.0.0.1, port 0).

The real `huggingface_hub` client (`snapshot_download`, `hf_hub_download`, `HfApi.model_info`,
`list_repo_files`, `list_repo_tree`, `get_hf_file_metadata`) talks to it exactly as it talks to
huggingface.co: pass `endpoint=server.url` (HF_ENDPOINT is only read when huggingface_hub is first
imported, so a subprocess can also get it through its environment).

Repositories are plain directories; every file under the directory is a file of the repo.

In-process use (the server runs in a daemon thread)::

    from tests.support.hf_server import HubServer, Fault

    with HubServer() as hub:
        sha = hub.add_repo("org/tiny", "/tmp/tiny")            # branch "main" -> commit sha
        hub.add_repo("org/tiny", "/tmp/tiny-v2", revision="v2")  # another commit on ref "v2"
        hub.add_repo("org/gated", "/tmp/tiny", gated=True)        # needs a granted token
        hub.add_token("hf_good", grant=["org/gated"])
        hub.add_fault(Fault(path="*/resolve/*", status=429, times=2, retry_after=0))
        hub.add_fault(Fault(path="*model-00001*", drop_after=1000, times=1))
        hub.add_fault(Fault(path="*.safetensors", rate=2_000_000))  # bytes/s, forever
        ...  # huggingface_hub.snapshot_download("org/tiny", endpoint=hub.url, ...)
        hub.stats()            # {"requests": N, "bytes": B, "paths": {path: {"GET": n, "HEAD": n, "bytes": b}}}
        hub.file_bytes("org/tiny", "config.json")   # body bytes served for that file (all revisions)
        hub.reset_stats(); hub.clear_faults()

Out-of-process use (e.g. the server must outlive a SIGKILLed client, or tests of another area)::

    proc = HubServer.spawn(repos={"org/tiny": "/tmp/tiny"}, gated={"org/gated": "/tmp/g"},
                           tokens={"hf_good": ["org/gated"]})   # -> SpawnedHub (.url, .client, .stop())
    proc.client.stats(); proc.client.add_fault(Fault(...)); proc.client.reset_stats()

  or `python -m tests.support.hf_server --repo org/tiny=/tmp/tiny [--gated org/g=/dir]
  [--token hf_good:org/g] [--url-file F]` which prints the URL on its first stdout line.

`HubClient(url)` drives any running server through its control endpoints, which are never counted
in the statistics: `GET /_stats`, `DELETE /_stats` (reset), `POST /_faults` (JSON list of faults to
add), `DELETE /_faults` (clear), `POST /_repos` ({"repo_id", "path", "revision", "gated"}).

Hub behaviour implemented (checked against huggingface_hub 2.x's client code):
- `GET /api/models/{repo}[/revision/{rev}]` -> JSON with `id`, `sha`, `siblings` (`rfilename`, and
  with `?blobs=true` also `size`, `blobId`, `lfs`), `gated`, `private`, `config`, `safetensors`
  (parameter counts per dtype read from the shards' headers), `tags`, ...
- `GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=...` -> file/directory entries with `oid`
  (git blob sha1), `size`, `lfs` {`oid` (sha256), `size`, `pointerSize`}; paginated with a
  `Link: <...>; rel="next"` header (`page_size`, default 1000, like the hub).
- `POST /api/models/{repo}/paths-info/{rev}` (`HfApi.get_paths_info`): a form-encoded (what
  huggingface_hub sends: `paths=a&paths=b&expand=False`) or JSON (`{"paths": [...], "expand": true}`)
  body; the entries of the paths that exist, in the tree's format (missing paths are left out, a
  directory is a `directory` entry); `expand` adds `lastCommit` and `securityFileStatus`.
- Every request's body is read (`Content-Length`), whatever the answer, so a keep-alive
  connection stays in sync after an error or an injected fault.
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}` -> `X-Repo-Commit`, `ETag` (git blob sha1), and for LFS
  files `X-Linked-Etag` (sha256) and `X-Linked-Size`; `Accept-Ranges: bytes`, `Range` -> 206.
- Errors with the hub's `X-Error-Code` header: unknown repo -> 401 (no token) or 404 (valid token)
  `RepoNotFound`; unknown revision -> 404 `RevisionNotFound`; unknown file -> 404 `EntryNotFound`
  (with `X-Repo-Commit`); gated file without a granted token -> 401 (anonymous) or 403 `GatedRepo`;
  unknown token -> 401 `X-Error-Message: Invalid credentials in Authorization header`.
  Like the hub, a gated repo's metadata and tree are public; its files are not.
- Files are LFS when they are weights-like (`.safetensors`, `.bin`, `.pt`, `.pth`, `.model`, ...) or
  larger than 10 MiB, like the hub's default `.gitattributes`.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".model",
                ".tiktoken", ".zip", ".tar", ".gz")
LFS_MIN_SIZE = 10 * 1024 * 1024
CHUNK = 256 * 1024
_SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                       "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


# --------------------------------------------------------------------------------------------- data


@dataclass
class Fault:
    """One injected misbehaviour, matched against the request path (fnmatch glob, no query).

    `times` is how many matching requests it applies to (None = all). On a match, in order:
    `latency` seconds of delay; then `status` (e.g. 429/500/503) is answered instead of the real
    response, with `Retry-After: retry_after` when set; otherwise the real response is sent, with
    its body throttled to `rate` bytes/s and the connection dropped after `drop_after` body bytes.
    """

    path: str = "*"
    method: str | None = None          # "GET", "HEAD" or None for both
    times: int | None = None
    latency: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    drop_after: int | None = None
    rate: float | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return fnmatch.fnmatchcase(path, self.path)


@dataclass
class RepoFile:
    path: str
    disk: Path
    size: int
    blob_id: str            # git blob sha1 of the content (what the hub calls oid for regular files)
    sha256: str | None      # LFS files only
    lfs: bool

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return entry


@dataclass
class Commit:
    sha: str
    files: dict[str, RepoFile]


@dataclass
class Repo:
    repo_id: str
    gated: bool = False
    private: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        if revision in self.commits:
            return self.commits[revision]
        matches = [c for sha, c in self.commits.items() if len(revision) >= 7 and sha.startswith(revision)]
        return matches[0] if len(matches) == 1 else None


def _git_blob_sha1(path: Path, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan_directory(directory: str | os.PathLike[str]) -> dict[str, RepoFile]:
    """Every file under `directory` as a repo file (hashes computed once, at registration)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"repo directory {root} does not exist")
    files: dict[str, RepoFile] = {}
    for disk in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = disk.relative_to(root).as_posix()
        if rel.startswith(".git/"):
            continue
        size = disk.stat().st_size
        lfs = rel.endswith(LFS_SUFFIXES) or size > LFS_MIN_SIZE
        files[rel] = RepoFile(rel, disk, size, _git_blob_sha1(disk, size), _sha256(disk) if lfs else None, lfs)
    return files


def commit_sha(repo_id: str, files: Mapping[str, RepoFile]) -> str:
    """A deterministic 40-hex commit id for a repo's content (same content -> same commit)."""
    h = hashlib.sha1(repo_id.encode())
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel].blob_id}\0".encode())
    return h.hexdigest()


def _safetensors_parameters(files: Iterable[RepoFile]) -> dict[str, Any] | None:
    """Parameter counts per dtype from the shards' JSON headers, as the hub's `safetensors` field."""
    counts: dict[str, int] = {}
    found = False
    for f in files:
        if not f.path.endswith(".safetensors") or "/" in f.path:
            continue
        try:
            with f.disk.open("rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if n <= 0 or n > 100 * 1024 * 1024:
                    continue
                header = json.loads(fh.read(n))
        except (OSError, ValueError):
            continue
        found = True
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            numel = 1
            for d in info.get("shape", []):
                numel *= int(d)
            counts[info.get("dtype", "F32")] = counts.get(info.get("dtype", "F32"), 0) + numel
    if not found:
        return None
    return {"parameters": counts, "total": sum(counts.values())}


# --------------------------------------------------------------------------------------------- state


class HubState:
    """Repos, tokens, faults and statistics; shared by the handler threads (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, set[str]] = {}   # token -> gated repo ids it is granted
        self.faults: list[Fault] = []
        self.reset_stats()

    def reset_stats(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.requests = 0
            self.bytes = 0
            self.paths: dict[str, dict[str, int]] = {}

    def count(self, method: str, path: str) -> None:
        with self.lock:
            self.requests += 1
            entry = self.paths.setdefault(path, {"bytes": 0})
            entry[method] = entry.get(method, 0) + 1

    def add_bytes(self, path: str, n: int) -> None:
        with self.lock:
            self.bytes += n
            self.paths.setdefault(path, {"bytes": 0})["bytes"] += n

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "bytes": self.bytes,
                    "paths": {p: dict(v) for p, v in self.paths.items()}}

    def take_faults(self, method: str, path: str) -> list[Fault]:
        """The faults that apply to this request (consuming one of each one's `times`)."""
        with self.lock:
            hits = []
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                    hits.append(fault)
            return hits

    def add_repo(self, repo_id: str, directory: str | os.PathLike[str], revision: str = "main",
                 gated: bool = False, private: bool = False) -> str:
        files = scan_directory(directory)
        sha = commit_sha(repo_id, files)
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id))
            repo.gated = repo.gated or gated
            repo.private = repo.private or private
            repo.commits[sha] = Commit(sha, files)
            repo.refs[revision] = sha
        return sha


# --------------------------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aim-test-hub/1"
    state: HubState  # set on the subclass built per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if os.environ.get("AIM_TEST_HUB_LOG"):
            super().log_message(format, *args)

    # -- plumbing

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None) -> None:
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._json(status, {"error": message}, h)

    def _read_body(self) -> bytes:
        """The request body, read once per request (`_dispatch` reads it before anything else)."""
        body = getattr(self, "_body", None)
        if body is None:
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = 0
            body = self.rfile.read(n) if n > 0 else b""
            self._body = body
        return body

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- routing

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        self._body = None
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True   # not supported: never read a chunked body as the next request
        try:
            self._read_body()              # always, so the next request on this connection starts clean
            if path.startswith("/_"):
                return self._control(path)
            self.state.count(self.command, path)
            faults = self.state.take_faults(self.command, path)
            delay = sum(f.latency for f in faults)
            if delay:
                time.sleep(delay)
            for f in faults:
                if f.status is not None:
                    headers = {}
                    if f.retry_after is not None:
                        headers["Retry-After"] = str(int(f.retry_after))
                    return self._error(f.status, None, f"injected {f.status}", headers)
            stream = {"drop_after": min((f.drop_after for f in faults if f.drop_after is not None), default=None),
                      "rate": min((f.rate for f in faults if f.rate), default=None)}
            if path.startswith("/api/models/"):
                return self._api(path[len("/api/models/"):], query)
            if self.command not in ("GET", "HEAD"):
                return self._error(405, None, "method not allowed")
            return self._resolve(path.lstrip("/"), stream)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _control(self, path: str) -> None:
        st = self.state
        if path == "/_stats":
            if self.command == "DELETE":
                st.reset_stats()
                return self._json(200, {"ok": True})
            return self._json(200, st.stats())
        if path == "/_faults":
            if self.command == "DELETE":
                with st.lock:
                    st.faults.clear()
                return self._json(200, {"ok": True})
            if self.command == "POST":
                new = [Fault(**f) for f in json.loads(self._read_body() or b"[]")]
                with st.lock:
                    st.faults.extend(new)
                return self._json(200, {"ok": True, "faults": len(st.faults)})
            with st.lock:
                return self._json(200, [asdict(f) for f in st.faults])
        if path == "/_repos" and self.command == "POST":
            spec = json.loads(self._read_body())
            sha = st.add_repo(spec["repo_id"], spec["path"], spec.get("revision", "main"),
                              bool(spec.get("gated")), bool(spec.get("private")))
            return self._json(200, {"sha": sha})
        if path == "/_tokens" and self.command == "POST":
            spec = json.loads(self._read_body())
            with st.lock:
                st.tokens.setdefault(spec["token"], set()).update(spec.get("grant", []))
            return self._json(200, {"ok": True})
        return self._error(404, None, "unknown control endpoint")

    def _auth(self) -> tuple[bool, str | None]:
        """(auth header valid or absent, token)."""
        header = self.headers.get("Authorization") or ""
        if not header:
            return True, None
        token = header[7:] if header.lower().startswith("bearer ") else header
        with self.state.lock:
            return token in self.state.tokens, token

    def _split_repo(self, rest: str) -> tuple[Repo | None, str, str]:
        """Split `org/name/<rest>` (or `name/<rest>`) into the known repo and the remainder."""
        parts = rest.split("/")
        with self.state.lock:
            for n in (2, 1):
                candidate = "/".join(parts[:n])
                if candidate in self.state.repos:
                    return self.state.repos[candidate], candidate, "/".join(parts[n:])
        n = 2 if len(parts) > 2 else 1
        return None, "/".join(parts[:n]), "/".join(parts[n:])

    def _repo_or_error(self, rest: str) -> tuple[Repo | None, str]:
        valid, token = self._auth()
        if not valid:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None, ""
        repo, repo_id, remainder = self._split_repo(rest)
        if repo is None or (repo.private and not (token and repo.repo_id in self.state.tokens.get(token, ()))):
            self._error(404 if token else 401, "RepoNotFound", "Repository not found")
            return None, ""
        return repo, remainder

    def _commit_or_error(self, repo: Repo, revision: str) -> Commit | None:
        commit = repo.resolve(urllib.parse.unquote(revision))
        if commit is None:
            self._error(404, "RevisionNotFound", "Invalid rev id: " + urllib.parse.unquote(revision))
        return commit

    # -- /api/models

    def _api(self, rest: str, query: dict[str, list[str]]) -> None:
        repo, remainder = self._repo_or_error(rest)
        if repo is None:
            return
        kind, _, tail = remainder.partition("/")
        if kind == "paths-info":
            if self.command != "POST":
                return self._error(405, None, "paths-info takes a POST")
            commit = self._commit_or_error(repo, tail or "main")
            if commit is not None:
                self._paths_info(commit)
            return
        if self.command not in ("GET", "HEAD"):
            return self._error(405, None, "method not allowed")
        if kind in ("", "revision"):
            commit = self._commit_or_error(repo, tail or "main")
            if commit is not None:
                self._json(200, self._model_info(repo, commit, blobs=query.get("blobs", [""])[0].lower() == "true"))
            return
        if kind == "tree":
            revision, _, sub = tail.partition("/")
            commit = self._commit_or_error(repo, revision)
            if commit is not None:
                self._tree(repo, commit, urllib.parse.unquote(sub).strip("/"), query)
            return
        self._error(404, None, f"unknown api route {remainder!r}")

    def _model_info(self, repo: Repo, commit: Commit, blobs: bool) -> dict[str, Any]:
        siblings = []
        for f in commit.files.values():
            sib: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                sib.update(size=f.size, blobId=f.blob_id)
                if f.lfs:
                    sib["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(sib)
        config = None
        if "config.json" in commit.files:
            try:
                raw = json.loads(commit.files["config.json"].disk.read_text())
                config = {k: raw[k] for k in ("architectures", "model_type") if k in raw}
            except (OSError, ValueError):
                config = None
        info: dict[str, Any] = {
            "_id": commit.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": commit.sha,
            "private": repo.private, "gated": "manual" if repo.gated else False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": [], "library_name": "transformers",
            "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
            "siblings": siblings,
        }
        if config is not None:
            info["config"] = config
        st = _safetensors_parameters(commit.files.values())
        if st is not None:
            info["safetensors"] = st
        return info

    def _tree(self, repo: Repo, commit: Commit, sub: str, query: dict[str, list[str]]) -> None:
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{sub}/" if sub else ""
        if sub and sub in commit.files:
            return self._error(400, None, f"{sub} is a file, not a directory")
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for f in sorted(commit.files.values(), key=lambda x: x.path):
            if not f.path.startswith(prefix):
                continue
            rel = f.path[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0,
                                    "path": d})
            if recursive or len(parts) == 1:
                entries.append(f.tree_entry())
        if sub and not entries:
            return self._error(404, "EntryNotFound", f"{sub} does not exist on {commit.sha}",
                               {"X-Repo-Commit": commit.sha})
        page_size = int(query.get("page_size", ["1000"])[0])
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor:cursor + page_size]
        headers = {}
        if cursor + page_size < len(entries):
            q = {k: v[0] for k, v in query.items()}
            q.update(cursor=str(cursor + page_size), page_size=str(page_size))
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            path = urllib.parse.urlsplit(self.path).path
            headers["Link"] = f'<http://{host}{path}?{urllib.parse.urlencode(q)}>; rel="next"'
        self._json(200, page, headers)

    def _paths_info(self, commit: Commit) -> None:
        """`POST .../paths-info/{rev}`: the entries of the asked paths that exist, in asked order."""
        body = self._read_body()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype == "application/json":
                spec = json.loads(body or b"{}")
                paths, expand = spec.get("paths", []), spec.get("expand", False)
            else:
                form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
                paths, expand = form.get("paths", []), (form.get("expand") or ["false"])[-1]
        except (ValueError, UnicodeDecodeError, AttributeError) as exc:
            return self._error(400, None, f"bad paths-info body: {exc}")
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            return self._error(400, None, "paths must be a list of strings")
        expand = expand if isinstance(expand, bool) else str(expand).lower() in ("true", "1")
        last_commit = {"id": commit.sha, "title": "Upload folder", "date": "2025-01-01T00:00:00.000Z"}
        entries: list[dict[str, Any]] = []
        seen: set[str] = set()
        for raw in paths:
            p = raw.strip("/")
            if p in seen:
                continue
            seen.add(p)
            f = commit.files.get(p)
            if f is not None:
                entry = f.tree_entry()
                if expand:
                    entry["lastCommit"] = last_commit
                    entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False},
                                                   "pickleImportScan": None}
            elif p and any(name.startswith(p + "/") for name in commit.files):
                entry = {"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p}
                if expand:
                    entry["lastCommit"] = last_commit
            else:
                continue    # like the hub: a path that does not exist is simply not listed
            entries.append(entry)
        self._json(200, entries)

    # -- /{repo}/resolve/{rev}/{path}

    def _resolve(self, rest: str, stream: dict[str, Any]) -> None:
        repo, remainder = self._repo_or_error(rest)
        if repo is None:
            return
        kind, _, tail = remainder.partition("/")
        if kind != "resolve":
            return self._error(404, None, "not found")
        revision, _, filename = tail.partition("/")
        commit = self._commit_or_error(repo, revision)
        if commit is None:
            return
        filename = urllib.parse.unquote(filename)
        if repo.gated:
            _, token = self._auth()
            if not token:
                return self._error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have "
                                   "access to it and be authenticated to access it. Please log in.")
            if repo.repo_id not in self.state.tokens.get(token, ()):
                return self._error(403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are "
                                   "not in the authorized list.")
        f = commit.files.get(filename)
        if f is None:
            return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.sha})
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{f.blob_id}"', "Accept-Ranges": "bytes"}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
        start, end = 0, f.size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            start = int(a) if a else max(f.size - int(b), 0)
            end = int(b) if (a and b) else f.size - 1
            if start >= f.size:
                return self._error(416, None, "range not satisfiable", {"Content-Range": f"bytes */{f.size}"})
            end = min(end, f.size - 1)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        length = max(end - start + 1, 0)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        self._stream_body(f.disk, start, length, stream)

    def _stream_body(self, disk: Path, start: int, length: int, stream: dict[str, Any]) -> None:
        path = urllib.parse.urlsplit(self.path).path
        drop_after, rate = stream["drop_after"], stream["rate"]
        sent = 0
        began = time.monotonic()
        with disk.open("rb") as fh:
            fh.seek(start)
            while sent < length:
                want = min(CHUNK, length - sent)
                if rate:
                    want = min(want, max(int(rate / 20), 1))
                if drop_after is not None:
                    want = min(want, drop_after - sent)
                    if want <= 0:
                        self.wfile.flush()
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                chunk = fh.read(want)
                if not chunk:
                    break
                # Counted before the write: once the client holds the last byte a test may read the
                # statistics at once, before this thread runs again. A failed write takes it back.
                self.state.add_bytes(path, len(chunk))
                try:
                    self.wfile.write(chunk)
                except OSError:
                    self.state.add_bytes(path, -len(chunk))
                    raise
                sent += len(chunk)
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


# --------------------------------------------------------------------------------------------- API


WORKER_THREAD_PREFIX = "aim-dl"   # aim_engine.cache.warm's download pool


class HubServer:
    """The server, running in a daemon thread of this process. Use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="hf-test-hub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, once this process's download workers are done with us.

        A warm-up that fails on one file raises at once and leaves its sibling workers to end at
        their next chunk (by design: a boot must stop promptly). Stopping the server under them
        would send them into huggingface_hub's own retry loop against a closed port (~23 s), and
        its connection errors close the library's shared HTTP client, failing the next test's
        requests in this process. Against a live server they end in milliseconds."""
        deadline = time.monotonic() + 60
        for worker in [t for t in threading.enumerate() if t.name.startswith(WORKER_THREAD_PREFIX)]:
            worker.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # configuration
    def add_repo(self, repo_id: str, directory: str | os.PathLike[str], revision: str = "main",
                 gated: bool = False, private: bool = False) -> str:
        """Serve `directory` as `repo_id` at ref `revision`; returns the commit sha."""
        return self.state.add_repo(repo_id, directory, revision, gated, private)

    def add_token(self, token: str, grant: Iterable[str] = ()) -> None:
        """Make `token` valid, with access to the gated/private repos in `grant`."""
        with self.state.lock:
            self.state.tokens.setdefault(token, set()).update(grant)

    def add_fault(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    # statistics
    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset_stats(self) -> None:
        self.state.reset_stats()

    def file_bytes(self, repo_id: str, filename: str) -> int:
        return file_bytes(self.stats(), repo_id, filename)

    def file_requests(self, repo_id: str, filename: str, method: str = "GET") -> int:
        return file_requests(self.stats(), repo_id, filename, method)

    @staticmethod
    def spawn(repos: Mapping[str, str | os.PathLike[str]] | None = None,
              gated: Mapping[str, str | os.PathLike[str]] | None = None,
              tokens: Mapping[str, Iterable[str]] | None = None, timeout: float = 30) -> "SpawnedHub":
        """Run the server in a separate process (`python -m tests.support.hf_server`)."""
        argv = [sys.executable, "-m", "tests.support.hf_server"]
        for repo_id, path in (repos or {}).items():
            argv += ["--repo", f"{repo_id}={path}"]
        for repo_id, path in (gated or {}).items():
            argv += ["--gated", f"{repo_id}={path}"]
        for token, grant in (tokens or {}).items():
            argv += ["--token", f"{token}:{','.join(grant)}"]
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=root, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http://"):
            proc.kill()
            raise RuntimeError(f"hub server failed to start (got {line!r}, exit {proc.poll()})")
        return SpawnedHub(proc, line, HubClient(line, timeout=timeout))


def _file_path_matches(path: str, repo_id: str, filename: str) -> bool:
    prefix = f"/{repo_id}/resolve/"
    if not path.startswith(prefix):
        return False
    _rev, _, name = path[len(prefix):].partition("/")
    return urllib.parse.unquote(name) == filename


def file_bytes(stats: Mapping[str, Any], repo_id: str, filename: str) -> int:
    """Body bytes served for one repo file, summed over revisions, from a `stats()` snapshot."""
    return sum(v.get("bytes", 0) for p, v in stats["paths"].items() if _file_path_matches(p, repo_id, filename))


def file_requests(stats: Mapping[str, Any], repo_id: str, filename: str, method: str = "GET") -> int:
    return sum(v.get(method, 0) for p, v in stats["paths"].items() if _file_path_matches(p, repo_id, filename))


class HubClient:
    """Drives a running server (in-process or spawned) through its control endpoints."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_stats")

    def reset_stats(self) -> None:
        self._call("DELETE", "/_stats")

    def add_fault(self, *faults: Fault) -> None:
        self._call("POST", "/_faults", [asdict(f) for f in faults])

    def clear_faults(self) -> None:
        self._call("DELETE", "/_faults")

    def add_repo(self, repo_id: str, path: str | os.PathLike[str], revision: str = "main", gated: bool = False,
                 private: bool = False) -> str:
        return self._call("POST", "/_repos", {"repo_id": repo_id, "path": str(path), "revision": revision,
                                              "gated": gated, "private": private})["sha"]

    def add_token(self, token: str, grant: Iterable[str] = ()) -> None:
        self._call("POST", "/_tokens", {"token": token, "grant": list(grant)})

    def file_bytes(self, repo_id: str, filename: str) -> int:
        return file_bytes(self.stats(), repo_id, filename)

    def file_requests(self, repo_id: str, filename: str, method: str = "GET") -> int:
        return file_requests(self.stats(), repo_id, filename, method)


@dataclass
class SpawnedHub:
    proc: subprocess.Popen
    url: str
    client: HubClient

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "SpawnedHub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Local Hugging Face Hub-compatible test server")
    p.add_argument("--repo", action="append", default=[], metavar="ID=DIR", help="serve DIR as repo ID (ref main)")
    p.add_argument("--gated", action="append", default=[], metavar="ID=DIR", help="serve DIR as a gated repo")
    p.add_argument("--token", action="append", default=[], metavar="TOKEN:ID,ID", help="a valid token and its grants")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--url-file", help="also write the URL to this file")
    args = p.parse_args(argv)
    server = HubServer(port=args.port)
    for spec, gated in [(s, False) for s in args.repo] + [(s, True) for s in args.gated]:
        repo_id, _, path = spec.partition("=")
        server.add_repo(repo_id, path, gated=gated)
    for spec in args.token:
        token, _, grants = spec.partition(":")
        server.add_token(token, [g for g in grants.split(",") if g])
    if args.url_file:
        Path(args.url_file).write_text(server.url)
    print(server.url, flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    raise SystemExit(main())
