"""Feed argv to the REAL vLLM and SGLang parsers, in their cached environments.

One subprocess per engine parses a whole batch (building vLLM's parser costs seconds; doing it
once per recipe would cost minutes). The worker runs with the engine venv's own interpreter, so
the agent's environment never imports an engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

WORKER = Path(__file__).with_name("engine_parser_worker.py")

# What the engine needs to build its parser on a machine without a GPU.
ENGINE_ENV = {"vllm": {"VLLM_TARGET_DEVICE": "cpu"}, "sglang": {}}


@dataclass(frozen=True)
class Parsed:
    """The real parser's verdict on one argv: accepted with these values, or the error."""

    ok: bool
    values: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def parse_batch(engine: str, venv: Path, argvs: Sequence[Sequence[str]], timeout: float = 600,
                worker: Path = WORKER) -> list[Parsed]:
    """Parse each argv (engine arguments, without the command) with `engine`'s real parser
    (`worker`: the script run in the engine's environment; another one may check more)."""
    if not argvs:
        return []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AIM_"))}
    env.update(ENGINE_ENV[engine])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with tempfile.TemporaryDirectory(prefix=f"aim-parse-{engine}-") as tmp:
        src, out = Path(tmp, "in.json"), Path(tmp, "out.json")
        src.write_text(json.dumps([list(a) for a in argvs]), encoding="utf-8")
        proc = subprocess.run(
            [str(venv / "bin" / "python"), str(worker), engine, str(src), str(out)],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{engine} parser worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        raw = json.loads(out.read_text(encoding="utf-8"))
    return [Parsed(ok=r["ok"], values=r.get("values", {}), error=r.get("error", "")) for r in raw]


def parse_one(engine: str, venv: Path, argv: Sequence[str]) -> Parsed:
    return parse_batch(engine, venv, [argv])[0]
