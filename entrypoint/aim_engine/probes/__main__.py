"""`python -m aim_engine.probes`: the probe process (started by `aim_engine.probes.start`).

Either serves an inherited listening socket (`--fd`, how the agent starts it) or binds
`--host/--port` itself (handy for debugging a state file by hand).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aim_engine.probes", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="the agent's state file (JSON)")
    parser.add_argument("--fd", type=int, help="inherited listening socket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--watch-pid", type=int, default=os.getppid(),
                        help="exit when this process is gone (default: the parent)")
    parser.add_argument("--cleanup-dir", type=Path, help="directory to remove on exit (the state dir)")
    parser.add_argument("--linger", type=float, default=0.0,
                        help="seconds to keep answering after the engine failed (AIM_FAIL_GRACE)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    args = parser.parse_args(argv)

    # Terminal Ctrl-C and hang-ups are for the agent/engine; we follow the watched process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(64)
        print(f"probes listening on {args.host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)

    from aim_engine.logs import configure, get_logger
    from aim_engine.probes.server import serve

    configure(args.log_level, args.log_format)
    return serve(sock, args.state, args.watch_pid, args.cleanup_dir, linger=args.linger,
                 log=get_logger("aim_engine.probes"))


if __name__ == "__main__":
    sys.exit(main())
