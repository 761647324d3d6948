"""Health probes from the first second of a boot until the engine exits.

`start()` binds the probe port in the agent (so a busy port is a clear error at once and the
kernel queues connections before the probe process has even started), then hands the listening
socket to a separate, stdlib-only process: `python -m aim_engine.probes`. That process reads the
agent's state file (see `aim_engine.state`), keeps answering after the agent execs the engine,
checks the engine's /v1/models (and, once it is up, its /health) itself, records how the engine
exited, and exits with it (same PID).

Imports are inside `start()`: `aim-engine --help` does not pay for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_HOST = "0.0.0.0"   # kubelet probes the pod IP, not loopback
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
STARTUP_PATH = "/health/startup"
STATUS_PATH = "/status"
METRICS_PATH = "/metrics"   # Prometheus text (or OpenMetrics), served by the probe process


@dataclass
class ProbeProcess:
    """The running probe process and where it listens."""

    process: Any            # subprocess.Popen
    host: str
    port: int
    state_path: Path

    @property
    def pid(self) -> int:
        return int(self.process.pid)


def start(state_path: Path, port: int, host: str = DEFAULT_HOST, watch_pid: int | None = None,
          cleanup_dir: Path | None = None, linger: float = 0.0, log_level: str = "info",
          log_format: str = "auto") -> ProbeProcess:
    """Bind `host:port` now and start the probe process serving it; raise `AimError` if the
    port cannot be bound. `linger`: seconds the probe keeps answering after the engine failed."""
    import os
    import socket
    import subprocess
    import sys

    from aim_engine import redact
    from aim_engine.errors import AimError

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise AimError(f"cannot listen for health probes on {host}:{port}: {exc.strerror or exc}",
                       hint="set AIM_HEALTH_PORT to a free port (it must differ from AIM_PORT)") from None
    argv = [sys.executable, "-m", "aim_engine.probes", "--fd", str(sock.fileno()),
            "--state", str(state_path), "--watch-pid", str(watch_pid or os.getpid())]
    if cleanup_dir is not None:
        argv += ["--cleanup-dir", str(cleanup_dir)]
    argv += ["--linger", str(linger), "--log-level", log_level, "--log-format", log_format]
    # The probe needs no secrets: it gets the environment without them.
    env = {k: v for k, v in os.environ.items() if not redact.is_secret_name(k)}
    try:
        process = subprocess.Popen(argv, pass_fds=(sock.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                   start_new_session=True, close_fds=True)
    finally:
        sock.close()   # the probe process holds its own copy; ours must not leak into the engine
    return ProbeProcess(process=process, host=host, port=port,
                        state_path=state_path)
