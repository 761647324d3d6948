"""The per-version engine flag lists (data generated from the real parsers), their reader, and
which list checks a launch (engines/flags.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aim_engine.engines import flags

REPO = Path(__file__).resolve().parent.parent.parent
PACKAGED = {"vllm": ["0.31.0", "0.32.0", "0.33.0"], "sglang": ["0.5.21", "0.5.23"]}


@pytest.mark.parametrize("engine", sorted(PACKAGED))
def test_one_packaged_list_per_version_recording_how_to_regenerate_it(engine):
    found = flags.available(engine)
    assert [f.version for f in found] == PACKAGED[engine]
    for f in found:
        table = flags.load_file(f.path)
        assert (table.engine, table.version) == (engine, f.version) and not f.refreshed
        assert table.regenerate.startswith(".venv/bin/python scripts/gen-engine-flags.py " + engine)
        assert len(table.flags) > 100
    assert flags.load(engine).version == PACKAGED[engine][-1]      # the validator's list: the newest


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


def test_versions_differ_where_the_engines_did():
    """vLLM 0.33 spells the 'off' side of its enable switches --disable-x (0.32: --no-enable-x, which
    0.33 still answers to, hidden from its help: the list keeps it, after the visible spellings)."""
    old, new = flags.load("vllm", "0.32.0"), flags.load("vllm", "0.33.0")
    assert old.get("--disable-prefix-caching") is None
    assert new.get("--disable-prefix-caching").option_strings == (
        "--enable-prefix-caching", "--disable-prefix-caching", "--no-enable-prefix-caching")
    assert old.get("--grpc-port") is not None and flags.load("vllm", "0.31.0").get("--grpc-port") is None


@pytest.mark.parametrize("version, key", [("0.11.2+rocm700", (0, 11, 2, 0)), ("0.5.15.post1", (0, 5, 15, 1)),
                                          ("0.33.0", (0, 33, 0, 0)), ("0.34.0.dev12+gabc", (0, 34, 0, 0)),
                                          ("weird", ())])
def test_version_key(version, key):
    assert flags.version_key(version) == key


# ------------------------------------------------------------------ which list checks a launch
def test_the_installed_version_s_own_list():
    choice = flags.choose("vllm", True, "0.31.0")
    assert (choice.basis, choice.flags.version, choice.warn) == ("exact", "0.31.0", False)
    assert choice.label == "vllm 0.31.0"


def test_a_version_without_a_list_uses_the_nearest_and_says_so():
    choice = flags.choose("vllm", True, "0.32.7")
    assert (choice.basis, choice.flags.version, choice.warn) == ("nearest", "0.32.0", True)
    assert "no flag list for the installed vllm 0.32.7" in choice.reason and "nearest list, vllm 0.32.0" in choice.reason
    assert choice.to_dict()["warning"] == choice.reason
    assert "nearest list to the installed 0.32.7" in choice.label
    assert flags.choose("vllm", True, "0.40.0").flags.version == "0.33.0"      # newer than every list
    assert flags.choose("vllm", True, "0.10.1").flags.version == "0.31.0"      # older than every list
    assert flags.choose("vllm", True, "0.31.0+rocm700").basis == "nearest"     # a local build is not the release


def test_no_engine_installed_checks_against_the_newest_and_says_which():
    choice = flags.choose("sglang", False, None)
    assert (choice.basis, choice.flags.version, choice.warn) == ("newest", "0.5.23", False)
    assert "sglang is not installed here" in choice.reason and "sglang 0.5.23" in choice.reason
    unknown = flags.choose("vllm", True, None)
    assert (unknown.basis, unknown.warn) == ("newest", True) and "version is unknown" in unknown.reason


def test_a_refreshed_list_comes_first(tmp_path):
    source = flags.available("vllm")[0].path
    data = json.loads(source.read_text())
    data["version"] = "0.31.5"
    (tmp_path / "vllm-0.31.5.json").write_text(json.dumps(data))
    shutil.copy(flags.available("vllm")[1].path, tmp_path / "vllm-0.32.0.json")
    (tmp_path / "notes.txt").write_text("not a list")
    choice = flags.choose("vllm", True, "0.31.5", tmp_path)
    assert (choice.basis, choice.refreshed, choice.path) == ("exact", True, tmp_path / "vllm-0.31.5.json")
    assert "refreshed by the image build" in choice.reason
    assert flags.choose("vllm", True, "0.32.0", tmp_path).refreshed is True
    assert flags.choose("vllm", True, "0.32.0", tmp_path / "missing").refreshed is False


@pytest.mark.engine
@pytest.mark.slow
def test_committed_flag_lists_match_the_real_parsers(vllm_venv, sglang_venv):
    """Regenerates every packaged list from its real parser and compares (scripts/gen-engine-flags.py
    and `aim-engine engines refresh` share the dump in engines/parser_dump.py)."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts/gen-engine-flags.py"), "all", "--check"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("up to date") == sum(len(v) for v in PACKAGED.values()), proc.stdout


def test_a_canonical_flag_renamed_between_versions_takes_each_version_s_spelling():
    from dataclasses import replace

    from aim_engine.engines.base import ArgRenderer, table

    old = flags.load("vllm", "0.32.0")
    seqs = replace(old.flags["--max-num-seqs"], flag="--max-seqs", option_strings=("--max-seqs",))
    renamed = replace(old, version="9.9.9", flags={**{k: v for k, v in old.flags.items() if k != "--max-num-seqs"},
                                                   "--max-seqs": seqs})
    base = table()
    tbl = replace(base, canonical={**base.canonical, "--max-batch-size": {
        **base.canonical["--max-batch-size"], "vllm": {"flag": ["--max-seqs", "--max-num-seqs"]}}})
    assert tbl.flag("--max-batch-size", "vllm", old) == "--max-num-seqs"
    assert tbl.flag("--max-batch-size", "vllm", renamed) == "--max-seqs"
    for flag_list, spelled in ((old, "--max-num-seqs"), (renamed, "--max-seqs")):
        r = ArgRenderer("vllm", flag_list, tbl)
        r.apply({"--max-batch-size": "8"}, "recipe")
        assert r.render().args == [spelled, "8"]


@pytest.mark.parametrize("version, spelling, off", [
    ("0.32.0", "--no-enable-prefix-caching", True), ("0.32.0", "--enable-prefix-caching", False),
    ("0.33.0", "--disable-prefix-caching", True), ("0.33.0", "--no-enable-prefix-caching", True),
    ("0.33.0", "--enable-prefix-caching", False), ("0.33.0", "--no-enforce-eager", True)])
def test_which_spellings_turn_a_switch_off(version, spelling, off):
    from aim_engine.engines.base import is_negative

    info = flags.load("vllm", version).get(spelling)
    assert is_negative(info, spelling) is off
