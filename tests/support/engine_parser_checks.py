"""Checks a parser worker (engine_parser_worker.py) runs on an accepted argv beyond the parser,
inside the engine environment, asked for by name per batch (`parse_batch(..., checks=...)`).

- `parallel_config`, vLLM: the parsed values build vLLM's own `ParallelConfig` (its pydantic
  validation refuses, e.g., `--nnodes > 1` with the ray executor), and the result reports what vLLM
  derives from them: `world_size`, `nnodes_within_dp`, `node_rank_within_dp` (> 0 is what makes
  `vllm serve --headless` run the multiproc executor's workers of the leader's group,
  vllm/entrypoints/cli/serve.py). Stored under `values["_parallel_config"]`.
  SGLang: nothing beyond the parser (ServerArgs' own checks need a GPU).
"""

from __future__ import annotations

from typing import Callable

from engine_parser_worker import jsonable

PARALLEL_FIELDS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "nnodes", "node_rank",
                   "master_addr", "master_port", "distributed_executor_backend")
DERIVED = ("world_size", "nnodes_within_dp", "node_rank_within_dp", "distributed_executor_backend")


def vllm_parallel(values: dict) -> dict:
    from vllm.config import ParallelConfig

    try:
        config = ParallelConfig(**{k: values[k] for k in PARALLEL_FIELDS if values.get(k) is not None})
    except Exception as exc:   # vLLM's own validation of the combination
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {k: jsonable(getattr(config, k, None)) for k in DERIVED}


# check name -> engine -> (the key the result lands under in `values`, the check)
CHECKS: dict[str, dict[str, tuple[str, Callable[[dict], dict]] | None]] = {
    "parallel_config": {"vllm": ("_parallel_config", vllm_parallel), "sglang": None},
}


def checks_for(engine: str, names: list[str]) -> list[tuple[str, Callable[[dict], dict]]]:
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown parser check(s) {unknown}; known: {sorted(CHECKS)}")
    return [check for n in names if (check := CHECKS[n].get(engine))]
