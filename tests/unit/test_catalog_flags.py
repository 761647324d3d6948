"""The per-engine flag lists (data generated from the real parsers) and their reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aim_engine.engines import flags

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("engine, version", [("vllm", "0.32.0"), ("sglang", "0.5.23")])
def test_flag_lists_record_version_and_regenerate_command(engine, version):
    table = flags.load(engine)
    assert table.version == version
    assert table.regenerate.startswith(".venv/bin/python scripts/gen-engine-flags.py " + engine)
    assert len(table.flags) > 100


def test_known_flags_and_info():
    assert {"--tensor-parallel-size", "--max-num-seqs", "--max-model-len"} <= flags.known_flags("vllm")
    assert {"--tp-size", "--context-length", "--mem-fraction-static", "--model-path"} <= flags.known_flags("sglang")
    assert "--tp-size" not in flags.known_flags("vllm")
    assert flags.flag_info("vllm", "--trust-remote-code").takes_value is False
    assert flags.flag_info("vllm", "--no-enforce-eager").takes_value is False
    assert flags.flag_info("sglang", "--trust-remote-code").takes_value is False
    assert flags.flag_info("vllm", "--max-num-seqs").takes_value is True
    assert "bfloat16" in flags.flag_info("vllm", "--dtype").choices
    assert "--tensor-parallel-size" in flags.flag_info("sglang", "--tp-size").option_strings
    assert flags.flag_info("vllm", "--no-such-flag") is None
    with pytest.raises(ValueError):
        flags.known_flags("tgi")


@pytest.mark.engine
@pytest.mark.slow
def test_committed_flag_lists_match_the_real_parsers(vllm_venv, sglang_venv):
    """Regenerates from the real vLLM and SGLang parsers and compares with the committed files."""
    for engine, venv in (("vllm", vllm_venv), ("sglang", sglang_venv)):
        proc = subprocess.run([sys.executable, str(REPO / "scripts/gen-engine-flags.py"), engine, "--venv", str(venv),
                               "--check"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "up to date" in proc.stdout
