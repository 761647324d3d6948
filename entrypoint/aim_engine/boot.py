"""`aim-engine serve`: the boot sequence, from settings to the engine's own process.

    settings  -> parsed by the caller (`Settings.from_env()`)
    probes    -> up first, so /health/* and /status answer within the first second
    hardware  = detect(settings); engines = inventory.scan()   # the engines installed, no import
    plan      = select(settings, hardware, Catalog.load(settings), engines)   # an engine not installed
                                                                  # here fails now, before any download
    path      = cache.warm(plan.checkpoint, settings)     # skipped for a local directory
    launch    = render(plan, settings, path, cache_warm)
    [a group (docs/multinode.md): a worker joins its leader after selecting; every rank runs the
     launch's prelude; the leader waits for its workers, a worker for its leader's go]
    os.execvpe(launch.argv[0], launch.argv, launch.env)   # the engine keeps our PID

`serve()` below is that list. Every phase is logged once with its duration and recorded in the
state file the probe process serves as /status. Failures are `AimError`s: the state says why,
the probes keep saying it for `AIM_FAIL_GRACE` seconds (so `kubectl`/`curl` can read it), then
the process exits non-zero. SIGTERM/SIGINT before the exec stop the boot at once (the cache's
lock is released as the stack unwinds; its completeness marker is written last, so an
interrupted download is never mistaken for a complete one) and exit 128+signal. After the exec,
signals and the exit code are the engine's.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO, TypeVar

from aim_engine import redact
from aim_engine.errors import AimError
from aim_engine.logs import configure_from, get_logger
from aim_engine.settings import Settings
from aim_engine.state import BootState

T = TypeVar("T")
STOP_ENGINE_S = 60.0  # `--warm-only`: how long the engine may take to stop after SIGTERM
STOP_GRACE_S = 5.0    # after SIGTERM, unwinding (lock release, state write) may take this long at most


class Stopped(BaseException):
    """SIGTERM/SIGINT arrived before the exec. A BaseException, so no `except Exception` in a
    library swallows it on the way up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def stop_on_signals(on_force: Callable[[int], None] | None = None) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into `Stopped` in the main thread, with a watchdog: if unwinding
    takes longer than STOP_GRACE_S (a safety net: the download pool does not wait for its
    workers, so a normal stop unwinds at once), call `on_force(signum)` and exit anyway — the OS releases the file lock with the process, and
    the cache marks nothing complete that is not."""

    watchdogs: list[threading.Timer] = []

    def force(signum: int) -> None:
        try:
            if on_force is not None:
                on_force(signum)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)

    def handler(signum: int, _frame: Any) -> None:
        timer = threading.Timer(STOP_GRACE_S, force, (signum,))
        timer.daemon = True
        timer.start()
        watchdogs.append(timer)
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for timer in watchdogs:   # the stack unwound to here in time: no forced exit needed
            timer.cancel()


class Boot:
    """The edge of the boot: the state file, the probe process, phase timing and the exec."""

    def __init__(self, settings: Settings, state_dir: Path | None = None) -> None:
        self.settings = settings
        self.log = get_logger("aim_engine.boot")
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="aim-engine-"))
        self.state = BootState(self.state_dir / "state.json", masker=redact.mask)
        self.state.update(model_id=settings.model_id, settings=settings.public_dict())
        self.probe: Any = None
        self.engines: Any = None      # engines.inventory.Inventory, from the detecting phase
        self.hardware: Any = None
        self.compile_plan: Any = None
        self.peers: Any = None        # peers.Peers on a multi-node group

    def start_probes(self) -> None:
        from aim_engine import probes

        s = self.settings
        self.probe = probes.start(self.state.path, s.health_port, cleanup_dir=self.state_dir, linger=s.fail_grace,
                                  log_level="debug" if s.debug else s.log_level, log_format=s.log_format)
        self.state.update(probe={"port": self.settings.health_port, "pid": self.probe.pid})
        self.log.info("probes listening", port=self.settings.health_port, pid=self.probe.pid)

    def check_api_port(self) -> None:
        """The engine's port is checked now, as the probes' is: a port in use, or a privileged
        port without CAP_NET_BIND_SERVICE, fails the boot in a second with a clear error, not
        after the download, inside the engine."""
        import errno
        import socket

        port = self.settings.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
            sock.listen(1)
        except OSError as exc:
            hint = ("ports below 1024 need root or CAP_NET_BIND_SERVICE: use AIM_PORT=8000 or grant the capability"
                    if exc.errno in (errno.EACCES, errno.EPERM) else
                    "another process listens there: stop it or choose another AIM_PORT")
            raise AimError(f"cannot listen for the engine's API on 0.0.0.0:{port} (AIM_PORT): {exc.strerror or exc}",
                           hint=hint) from None
        finally:
            sock.close()

    def phase(self, name: str, fn: Callable[[], T]) -> T:
        """Run one phase: record it in the state, log it once with its duration."""
        self.state.enter(name)
        started = time.perf_counter()
        result = fn()
        self.log.info("phase done", phase=name, duration_ms=round(1000 * (time.perf_counter() - started), 1))
        return result

    # --- the steps that need more than one call ----------------------------------------------

    def detect(self) -> Any:
        from aim_engine.hardware import detect

        from aim_engine.engines import inventory

        hardware = detect(self.settings)
        self.hardware = hardware
        self.engines = inventory.scan(flavour=self.settings.image_flavour)
        self.state.update(hardware=hardware.to_dict(), engines=self.engines.to_dict())
        return hardware

    def select(self, hardware: Any) -> Any:
        from aim_engine.cache.layout import check_cache_root, is_local_model
        from aim_engine.catalog import Catalog
        from aim_engine.planner.select import select

        if self.settings.model_id and not is_local_model(self.settings.model_id):
            # Planning may already read or fetch config.json through the cache: a cache path that
            # is a file, /dev/null or /proc/self is named as such, not as an unreachable hub.
            check_cache_root(self.settings.cache_path)
        plan = select(self.settings, hardware, Catalog.load(self.settings), self.engines)
        self.state.update(plan=plan.to_dict(), recipe={"id": plan.recipe.recipe_id, "why": list(plan.reasons),
                                                       "synthesized": plan.synthesized,
                                                       "fallback_hardware": plan.fallback_hardware})
        self.log.info("plan", recipe=plan.recipe.recipe_id, engine=plan.engine, engine_version=plan.engine_version,
                      target=plan.target, checkpoint=plan.checkpoint, reasons=list(plan.reasons))
        for warning in getattr(plan, "warnings", ()):   # e.g. a group larger than the model needs
            self.log.warning("plan warning", warning=warning)
            self.state.update(warnings=[*self.state.data.get("warnings", []), warning])
        if self.engines is not None and plan.engine_found is None:
            # Nothing could run the plan (no engine at all here): say so before any download.
            from aim_engine.engines.inventory import missing

            raise missing(plan.engine, self.engines, f"recipe {plan.recipe.recipe_id} runs {plan.engine}")
        # Render once now, as `plan` does, so a flag the installed engine version lacks (in a recipe
        # or AIM_ENGINE_ARGS) stops the boot before the download, not only before the exec.
        from aim_engine.engines import render

        render(plan, self.settings, plan.checkpoint, cache_warm=plan.is_local_checkpoint)
        return plan

    def warm(self, plan: Any) -> Any:
        from aim_engine.cache import warm

        def on_progress(progress: Any) -> None:
            if progress.phase == "waiting" and "lock_wait_since" not in self.state.data:
                self.state.data["lock_wait_since"] = time.time()   # /metrics: the lock wait so far
            self.state.progress(**progress.to_dict())

        result = warm(plan.checkpoint, self.settings, revision=self.settings.model_revision, on_progress=on_progress)
        self.state.update(cache={"path": result.path, "commit": result.commit, "already_warm": result.already_warm,
                                 "bytes": result.bytes, "downloaded_bytes": result.downloaded_bytes,
                                 "offline": result.offline, "lock_wait_s": result.lock_wait_s})
        return result

    def render(self, plan: Any, model_path: str, cache_warm: bool) -> Any:
        from aim_engine.engines import render

        launch = render(plan, self.settings, model_path, cache_warm)
        self.compile_cache(plan, launch, model_path)
        choice = launch.flag_list
        if choice is not None and choice.warn:     # the check was not exact: say so loudly, everywhere
            self.log.warning("engine flag list is not the installed version's", engine=launch.engine,
                             installed=choice.installed, checked_against=choice.flags.version, reason=choice.reason)
            self.state.update(warnings=[*self.state.data.get("warnings", []), choice.reason])
        public = launch.public_dict()
        self.state.update(engine={**public, "name": launch.engine, "port": self.settings.port})
        return launch

    # --- a group (docs/multinode.md) -----------------------------------------------------------

    def group_of(self, plan: Any) -> Any:
        """This node's group, with its facts published (/status): None on one node."""
        group = getattr(self.hardware, "group", None)
        if group is None or not group.is_multi_node:
            return None
        from aim_engine.peers import Peers

        self.peers = Peers(self.state, self.settings, group, self.log)
        self.peers.publish(plan)
        return group

    def before_exec(self, launch: Any) -> None:
        """The prelude, then the group's barrier: the leader waits for its workers (and, on Ray,
        for the Ray cluster), a worker for its leader's go."""
        if not launch.prelude and self.peers is None:
            return          # one node: nothing to import, nothing to wait for
        from aim_engine import peers as peers_module

        if launch.prelude:
            self.phase("prelude", lambda: peers_module.run_prelude(
                launch, self.log, timeout=self.settings.peer_timeout or None))
        if self.peers is None:
            return
        if self.peers.group.is_leader:
            own = f"http://127.0.0.1:{self.settings.health_port}"

            def leader_wait() -> None:
                self.peers.wait_for_workers(own)
                if self.peers.group.backend == "ray":
                    self.peers.wait_for_ray(launch)

            self.phase("waiting_for_workers", leader_wait)
        else:
            self.phase("waiting_for_leader", self.peers.wait_for_leader)

    def compile_cache(self, plan: Any, launch: Any, model_path: str) -> Any:
        """Point the engine's compile and kernel caches at the volume (docs/cache.md); say in the
        log and /status whether this boot should skip compiling (warm) or compile (cold)."""
        from aim_engine.cache import compiled

        cplan = compiled.plan_for(plan, launch, self.settings.cache_path,
                                  gfx=getattr(self.hardware, "gfx", None), model_path=model_path)
        cplan = self.compile_plan = compiled.prepare(cplan, self.log)
        launch.env.update(cplan.env)
        launch.env_changes.update(cplan.env)
        self.state.update(compile_cache=cplan.to_dict())
        message = {"warm": "compile cache warm (hit)", "cold": "compile cache cold (miss)",
                   "off": "compile cache off", "user": "compile cache set by the user"}[cplan.state]
        self.log.info(message, reason=cplan.reason, id=cplan.key,
                      path=str(cplan.work_dir) if cplan.work_dir else None)
        return cplan

    def _check_binary(self, launch: Any) -> str:
        import shutil

        binary = launch.argv[0]
        if not shutil.which(binary, path=launch.env.get("PATH", os.defpath)):
            raise AimError(f"engine binary {binary!r} ({launch.engine}) not found on PATH",
                           hint="run the image's engine environment, or put the engine's virtualenv bin/ "
                                "first on PATH (make run does)")
        return binary

    def warm_only(self, plan: Any, launch: Any) -> int:
        """`serve --warm-only`: run the engine as a child until it is ready and its compile cache
        is published, then stop it and return 0 (a pre-warm Job on the target GPU)."""
        import subprocess

        from aim_engine.cache import compiled

        self._check_binary(launch)
        self.state.enter("engine_starting")
        self.log.info("warm-only: starting the engine as a child", recipe=plan.recipe.recipe_id,
                      engine=launch.engine, argv=redact.mask_argv(launch.argv, redact.secret_values(launch.env)))
        if self.compile_plan is not None:
            compiled.record_attempt(self.compile_plan)
        engine = subprocess.Popen(launch.argv, env=launch.env, stdin=subprocess.DEVNULL)
        try:
            status = self._wait_warmed(engine)
        finally:
            if engine.poll() is None:
                engine.terminate()
                try:
                    engine.wait(STOP_ENGINE_S)
                except subprocess.TimeoutExpired:
                    engine.kill()
                    engine.wait()
        cc = status.get("compile_cache") or {}
        self.log.info("warm-only: engine was ready; stopped it", compile_cache=cc.get("state"),
                      published=cc.get("published"), to_ready_s=(status.get("timings") or {}).get("to_ready"))
        return 0

    def _wait_warmed(self, engine: Any) -> dict[str, Any]:
        """Poll our own /status until the engine is ready and the probe has finished its compile
        cache step (published, or noted a warm boot); raise if the engine exits first."""
        import json
        import urllib.request

        url = f"http://127.0.0.1:{self.settings.health_port}/status"
        while True:
            code = engine.poll()
            if code is not None:
                raise AimError(f"warm-only: the engine exited with code {code} before it was ready",
                               hint="see the engine's log above")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = json.loads(response.read())
            except (OSError, ValueError):
                status = {}
            cc = status.get("compile_cache") or {}
            settled = cc.get("state") not in ("warm", "cold") or "published" in cc or "ready_with" in cc
            if status.get("ready") and settled:
                return status
            time.sleep(0.5)

    def exec(self, plan: Any, launch: Any) -> None:
        """Replace this process with the engine. Returns only by raising."""
        binary = self._check_binary(launch)
        self.state.enter("engine_starting")
        self.log.info("exec engine", recipe=plan.recipe.recipe_id, engine=launch.engine,
                      argv=redact.mask_argv(launch.argv, redact.secret_values(launch.env)),
                      boot_ms=round(1000 * (time.time() - self.state.started_at), 1))
        sys.stdout.flush()
        sys.stderr.flush()
        if self.compile_plan is not None:
            from aim_engine.cache import compiled

            compiled.record_attempt(self.compile_plan)
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        try:
            os.execvpe(binary, launch.argv, launch.env)
        except OSError as exc:
            raise AimError(f"could not start the engine {binary!r}: {exc.strerror or exc}") from None

    # --- endings -------------------------------------------------------------------------------

    def failed(self, exc: BaseException, stream: TextIO) -> int:
        """Record the failure, say it once, keep /status telling it for the grace period."""
        if isinstance(exc, AimError):
            code, message, hint, kind = exc.exit_code, exc.message, exc.hint, type(exc).__name__
        elif isinstance(exc, OSError):   # the file system said no: name the file
            from aim_engine.errors import os_error_text

            code, message, kind = 1, os_error_text(exc), "OSError"
            hint = "check that path: its permissions, its type and the length of its name"
        else:   # a bug: the traceback goes to the log, /status carries the one-line summary
            code, message, hint, kind = 1, f"{type(exc).__name__}: {exc}", "this is a bug in aim-engine", "bug"
        # SIGTERM/SIGINT are handled before /status says `failed` (whoever reads that and stops us
        # gets the failure's exit code, never a death by the default action). Until the state, the
        # log line and the message are all out, a stop is only noted; during the grace period it
        # ends the wait. (Masking the signal would not do: the kernel hands it to any thread that
        # does not block it, e.g. a download worker, and Python runs the handler here anyway.)
        requested: list[int] = []
        waiting = False

        def on_stop(signum: int, _frame: Any) -> None:
            requested.append(signum)
            if waiting:
                raise Stopped(signum)

        previous = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.state.fail(redact.mask_text(message, redact.secret_values()), hint, kind)
            self.log.error("boot failed", phase=self.state.error["phase"] if self.state.error else None,
                           error=message, hint=hint, exc_info=kind == "bug")
            said = exc if isinstance(exc, AimError) else message + (f"\n  hint: {hint}" if hint else "")
            print(redact.mask_text(f"aim-engine: error: {said}", redact.secret_values()), file=stream, flush=True)
            grace = self.settings.fail_grace if self.probe is not None else 0.0
            if grace > 0 and not requested:
                self.log.info("keeping /status up before exiting", seconds=grace, port=self.settings.health_port)
                waiting = True
                if not requested:
                    time.sleep(grace)
        except Stopped:
            pass    # a stop ends the grace period early; the exit code stays the failure's
        finally:
            waiting = False
            for s, h in previous.items():
                signal.signal(s, h)
        return code

    def stopped(self, stop: Stopped, forced: bool = False) -> int:
        if self.state.phase == "stopped":
            return stop.exit_code
        self.state.update(stopped_by=signal.Signals(stop.signum).name)
        self.state.enter("stopped")
        self.log.warning("boot stopped by signal", signal=signal.Signals(stop.signum).name,
                         phase=self.state.phases[-2]["name"] if len(self.state.phases) > 1 else None,
                         forced_after_s=STOP_GRACE_S if forced else None)
        return stop.exit_code


def serve(settings: Settings, stream: TextIO | None = None, warm_only: bool = False) -> int:
    """Boot and exec the engine; returns (an exit code) only when the boot fails or is stopped.
    `warm_only`: run the engine as a child until it is ready, then stop it and return 0."""
    stream = stream or sys.stderr
    configure_from(settings)
    boot = Boot(settings)
    try:
        with stop_on_signals(on_force=lambda signum: boot.stopped(Stopped(signum), forced=True)):
            boot.start_probes()
            boot.check_api_port()
            hardware = boot.phase("detecting", boot.detect)
            plan = boot.phase("selecting", lambda: boot.select(hardware))
            group = boot.group_of(plan)
            if group is not None and warm_only:
                raise AimError("serve --warm-only runs the engine of one node; it cannot warm a multi-node group",
                               hint="run the pre-warm Job without AIM_NODE_COUNT / the group's variables")
            if group is not None and not group.is_leader:
                boot.phase("joining", boot.peers.join)
            if plan.is_local_checkpoint:
                model_path, offline = plan.checkpoint, True     # used in place: nothing to download
                boot.log.info("local model directory: cache skipped", path=plan.checkpoint)
            else:
                result = boot.phase("downloading", lambda: boot.warm(plan))
                model_path, offline = result.path, result.offline
            launch = boot.phase("rendering", lambda: boot.render(plan, model_path, offline))
            if warm_only:
                return boot.warm_only(plan, launch)
            boot.before_exec(launch)
            boot.exec(plan, launch)
    except Stopped as stop:
        return _exit_promptly(boot.stopped(stop))
    except AimError as exc:
        return _exit_promptly(boot.failed(exc, stream))
    except Exception as exc:  # noqa: BLE001 — a bug still gets /status and a non-zero exit
        return _exit_promptly(boot.failed(exc, stream))
    return 1    # unreachable: exec returned without raising


def _exit_promptly(code: int) -> int:
    """Return `code`, or exit now when worker threads (an interrupted download) would make the
    interpreter wait for them at shutdown."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
