"""engines/recipe_args.py: where a setting lives in a recipe's args, derived from canonical.yaml
and the engines' flag lists (the one function selection, the validator and the AIM_ENGINE_ARGS
checks call), and the engines' own defaults."""

from __future__ import annotations

import pytest

from aim_engine.engines import recipe_args as ra
from aim_engine.engines.base import table

GIB = 1 << 30


@pytest.mark.parametrize("args, key, engine, found", [
    ({"--max-batch-size": "8"}, ra.BATCH, "vllm", ("--max-batch-size", "8")),
    ({"--max-num-seqs": "8"}, ra.BATCH, "vllm", ("--max-num-seqs", "8")),
    ({"--max_num_seqs": "8"}, ra.BATCH, "vllm", ("--max_num_seqs", "8")),          # as the parser reads it
    ({"--max-num-seqs": "8"}, ra.BATCH, "sglang", (None, None)),                   # not an SGLang flag
    ({"--max-running-requests": "8"}, ra.BATCH, "sglang", ("--max-running-requests", "8")),
    ({"-tp": "2"}, ra.TENSOR_PARALLEL, "vllm", ("-tp", "2")),                        # an alias from the flag list
    ({"--tensor-parallel-size": "2"}, ra.TENSOR_PARALLEL, "sglang", ("--tensor-parallel-size", "2")),
    ({"--tp-size": "2"}, ra.TENSOR_PARALLEL, "sglang", ("--tp-size", "2")),
    ({"--dp-size": "2"}, ra.DATA_PARALLEL, "sglang", ("--dp-size", "2")),
    ({"--mem-fraction-static": "0.8"}, ra.UTILIZATION, "sglang", ("--mem-fraction-static", "0.8")),
    ({"--max-model-len": None}, ra.CONTEXT, "vllm", (None, None)),                  # null = removed
    ({"--max-model-len": "9", "--max-context-len": "8"}, ra.CONTEXT, "vllm", ("--max-context-len", "8")),
    ({"--max-model-len": "9"}, ra.CONTEXT, None, ("--max-model-len", "9")),         # any engine
])
def test_lookup(args, key, engine, found):
    assert ra.lookup(args, key, engine) == found


def test_spellings_come_from_canonical_yaml():
    for key, per_engine in table().canonical.items():
        for engine, spec in per_engine.items():
            names = ra.spellings(key, engine)
            assert names[0] == key
            if spec.get("flag"):
                assert spec["flag"] in names


def test_engine_defaults():
    """vLLM 0.32 EngineArgs.get_batch_defaults: 1024 sequences on >= 70 GiB, 256 below."""
    assert ra.default_batch("vllm", 192 * GIB) == 1024
    assert ra.default_batch("vllm", 70 * GIB) == 1024
    assert ra.default_batch("vllm", 64 * GIB) == 256
    assert ra.default_utilization("vllm") == 0.9 and ra.default_utilization("sglang") == 0.85
