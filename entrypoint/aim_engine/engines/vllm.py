"""vLLM: `vllm serve MODEL [flags]` (the `vllm` console script of the engine's environment).

Everything engine-specific is data: the command here, the flag translation in canonical.yaml,
the exact flags in flags/vllm-<version>.json, the environment defaults in rocm_env.yaml. vLLM refuses
connections until the model is loaded, then answers `/health` and `/v1/models`.
"""

from __future__ import annotations

from aim_engine.engines.launch import CommandAdapter, EngineSpec

SPEC = EngineSpec(name="vllm", command=("vllm", "serve"))
ADAPTER = CommandAdapter(SPEC)
render = ADAPTER.render
