"""Runs INSIDE an engine environment, like engine_parser_worker.py (same IN/OUT files), and checks
more of a multi-node argv than the parser does:

- vLLM: the parsed values build vLLM's own `ParallelConfig` (its pydantic validation refuses, e.g.,
  `--nnodes > 1` with the ray executor), and the result reports what vLLM derives from them:
  `world_size`, `nnodes_within_dp`, `node_rank_within_dp` (> 0 is what makes `vllm serve --headless`
  run the multiproc executor's workers of the leader's group, vllm/entrypoints/cli/serve.py);
- SGLang: the parser only (ServerArgs' own checks need a GPU).

    python multinode_parser_worker.py ENGINE IN.json OUT.json
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine_parser_worker import jsonable, parse_one, sglang_parser, vllm_parser  # noqa: E402

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


def main() -> int:
    engine, in_path, out_path = sys.argv[1:4]
    parser, validate = {"vllm": vllm_parser, "sglang": sglang_parser}[engine]()
    with open(in_path, encoding="utf-8") as f:
        batch = json.load(f)
    results = []
    for argv in batch:
        result = parse_one(parser, validate, argv)
        if result["ok"] and engine == "vllm":
            result["values"]["_parallel_config"] = vllm_parallel(result["values"])
        results.append(result)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
