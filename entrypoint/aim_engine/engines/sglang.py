"""SGLang: `python3 -m sglang.launch_server --model-path MODEL [flags]`.

SGLang binds 127.0.0.1 unless told otherwise, so the adapter always passes `--host 0.0.0.0`
(shared with vLLM, for one behaviour). It answers 503 on `/health` during warm-up, then 200.
`python3` is the interpreter of the engine's environment, found on PATH like vLLM's script.
"""

from __future__ import annotations

from aim_engine.engines.launch import CommandAdapter, EngineSpec

SPEC = EngineSpec(name="sglang", command=("python3", "-m", "sglang.launch_server"))
ADAPTER = CommandAdapter(SPEC)
render = ADAPTER.render
