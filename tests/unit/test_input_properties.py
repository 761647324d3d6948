"""Property suite over the agent's input surfaces (issue 12, "keep it fixed").

Surfaces: every AIM_* variable as arbitrary text; AIM_ENGINE_ARGS as arbitrary JSON; recipe and
model YAML (arbitrary documents, shipped documents with one part replaced, anchors, aliases and
repeated keys) in the user catalog directories. Each example runs the real CLI entry point
(`aim_engine.cli.main`) in this process — `plan --json`, `plan`, `validate` — with its output
captured; a few examples at the end run real processes with a memory cap.

Invariants, checked on every example:
- the exit code is 0, 1 or 2 and nothing raises (no traceback: `main` lets bugs escape);
- no planted secret (an API key in AIM_ENGINE_ARGS, HF_TOKEN, a password and a query token in
  HF_ENDPOINT) appears in stdout, stderr or the log lines;
- no file changes in the canary tree, a directory every example may point its paths at;
- a bounded run: every example ends within HANG_LIMIT_S (a hang guard, not a timing assertion:
  the property is "never hangs", and the real processes also run under a 1 GiB memory cap).

Hypothesis runs derandomized (a fixed seed) so CI is reproducible; set
HYPOTHESIS_PROFILE=aim-explore to search with fresh randomness and more examples.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import string
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aim_engine import cli, redact
from aim_engine.settings import VARIABLES
from tests.integration.test_plan_cli import MODEL, RECIPES

settings.register_profile("aim-ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("aim-explore", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "aim-ci")
                               if os.environ.get("HYPOTHESIS_PROFILE", "").startswith("aim-") else "aim-ci")

SECRET = "sk-PLANTEDengineARGSsecret"
HF_SECRET = "hf_PLANTEDhfTOKEN0123456789ab"
PASSWORD = "PLANTEDurlPASSWORD"
QTOKEN = "PLANTEDurlQUERYtoken"
PLANTED = (SECRET, HF_SECRET, PASSWORD, QTOKEN)
ENDPOINT = f"http://aim:{PASSWORD}@127.0.0.1:9/?token={QTOKEN}"     # loopback, closed: never the network
HANG_LIMIT_S = 60
RECIPE_ID = "acme-test-70b-mi300x-bf16"


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("world")
    canary = root / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "a.yaml").write_text("recipe_id: canary\n")
    (canary / "sub" / "b.txt").write_text("do not touch\n")
    (canary / "config.json").write_text('{"hidden_size": 1}')
    (root / "sysfs").mkdir()
    return {"root": root, "canary": canary, "sysfs": root / "sysfs"}


def _snapshot(tree: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out[str(path)] = (path.stat().st_mode, hashlib.sha256(data).hexdigest())
        else:
            out[str(path)] = (path.stat().st_mode, "dir")
    return out


class _Hang(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Hang(f"no result within {HANG_LIMIT_S} s")


def run_cli(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`aim_engine.cli.main(argv)` with exactly `env`'s AIM_*/HF_* variables; (code, out, err)."""
    with monkeypatch.context() as m:
        for name in list(os.environ):
            if name.startswith(("AIM_", "HF_", "HUGGING_FACE")) and not name.startswith("AIM_TEST_"):
                m.delenv(name)
        for name, value in env.items():
            m.setenv(name, value)
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HANG_LIMIT_S)
        try:
            try:
                code = cli.main(argv)
            except SystemExit as exc:     # argparse
                code = exc.code if isinstance(exc.code, int) else 2
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    redact.forget_remembered()
    return code, out, err


def check_invariants(code: int, out: str, err: str, world: dict[str, Path], before: dict[str, Any]) -> None:
    assert code in (0, 1, 2), (code, err[-2000:])
    assert "Traceback" not in err and "this is a bug" not in err, err[-3000:]
    for planted in PLANTED:
        assert planted not in out and planted not in err, (planted, (out + err)[:3000])
    assert _snapshot(world["canary"]) == before, "a file in the canary tree changed"


def base_env(world: dict[str, Path], tmp: Path) -> dict[str, str]:
    models, recipes = tmp / "models", tmp / "recipes"
    models.mkdir(exist_ok=True)
    recipes.mkdir(exist_ok=True)
    (models / "acme-test-70b.yaml").write_text(MODEL)
    (recipes / f"{RECIPE_ID}.yaml").write_text(RECIPES[RECIPE_ID])
    return {"AIM_MODELS_DIR": str(models), "AIM_RECIPES_DIR": str(recipes), "AIM_SYSFS_ROOT": str(world["sysfs"]),
            "AIM_CACHE_PATH": str(tmp / "cache"), "AIM_GPU_MODEL": "MI300X", "AIM_GPU_COUNT": "8",
            "AIM_MODEL_ID": "acme/Test-70B", "AIM_OFFLINE": "true", "AIM_LOG_LEVEL": "debug",
            "AIM_LOG_FORMAT": "json", "HF_TOKEN": HF_SECRET, "HF_ENDPOINT": ENDPOINT,
            "AIM_ENGINE_ARGS": json.dumps({"--api-key": SECRET})}


# ---------------------------------------------------------------------------- strategies
env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
special_values = st.sampled_from([
    "", " ", "0", "1", "-1", "8", "64", "65", "1_000", "1e400", "nan", "inf", "-inf", "0x10", "+5", "3.5",
    "\u0661\u0660", "\uff18", "9" * 40, "true", "yes", "maybe", "auto", "vllm", "sglang", "fp8", "bf16",
    "--trust-remote-code", "-x", "a\x1bb", "x" * 5000, "~nouser/x", "/etc/passwd", "/dev/null", "/proc/self",
    "../../../../etc", "acme/Test-70B", "acme70b", "MI300X", "MI250", "gfx942", "{}", "[]", "null",
    '{"--api-key": "' + SECRET + '"}', f"http://u:{PASSWORD}@127.0.0.1:9", "file:///etc/passwd",
])


@st.composite
def settings_env(draw: Any, world: dict[str, Path]) -> dict[str, str]:
    """Some AIM_* variables replaced by arbitrary or adversarial text; paths may point at the canary."""
    canary = world["canary"]
    path_values = st.sampled_from([str(canary), str(canary / "a.yaml"), str(canary / "sub"),
                                   f"{canary}{os.pathsep}{canary / 'sub'}", str(canary / "missing")])
    names = [v.name for v in VARIABLES if v.name not in ("AIM_CACHE_PATH", "HF_ENDPOINT", "HF_TOKEN")]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=6))
    out = {}
    for name in chosen:
        out[name] = draw(st.one_of(env_text, special_values, path_values))
    if "AIM_OFFLINE" in out and out["AIM_OFFLINE"].strip().lower() not in ("1", "true", "yes", "on"):
        out["AIM_OFFLINE"] = "maybe"         # never the network: an invalid value keeps it a settings error
    return out


flag_names = st.sampled_from([
    "--api-key", "--api_key", "--hf-token", "--tensor-parallel-size", "--data-parallel-size", "--max-context-len",
    "--max-model-len", "--max-batch-size", "--gpu-memory-utilization", "--seed", "--trust-remote-code", "--dtype",
    "--kv-cache-dtype", "--enforce-eager", "--no-enforce-eager", "--port", "--model", "--served-model-name",
    "--quantization", "--compilation-config", "--compilation-config.level", "--tp", "--max", "-x", "--",
    f"--api-key={SECRET}", "--override-generation-config",
])
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**40, 10**40),
                         st.floats(allow_nan=False, allow_infinity=False), env_text,
                         st.sampled_from(["1", "8", "1000", "-1", "0", "7", "1e30", "yes", "bfloat16", "fp8",
                                          "a\x00b", SECRET]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(env_text, st.sampled_from(["api_key", "token"])),
                                                 inner, max_size=3)), max_leaves=8)


@st.composite
def engine_args(draw: Any) -> str:
    args = draw(st.dictionaries(st.one_of(flag_names, env_text), json_values, max_size=5))
    args["--api-key"] = draw(st.sampled_from([SECRET, [SECRET], {"k": SECRET}]))
    if draw(st.booleans()):
        return json.dumps(args)
    return draw(st.sampled_from([json.dumps(args)[:-1], json.dumps([args]), "[" * 50, json.dumps(args) + "x"]))


def _recipe_doc() -> dict[str, Any]:
    return yaml.safe_load(RECIPES[RECIPE_ID])


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                         st.text(max_size=12), st.sampled_from(["--dtype", "8_gpu", "fp8", "MI300X", "true", SECRET]))
yaml_keys = st.one_of(st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12),
                      st.sampled_from(["recipe_id", "model_id", "vllm_serve", "args", "enabled", "--api-key", "1_gpu"]))
yaml_docs = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(yaml_keys, inner, max_size=5)),
                         max_leaves=20)


def _paths(data: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _replace(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    data[path[0]] = _replace(data[path[0]], path[1:], value)
    return data


@st.composite
def recipe_text(draw: Any) -> str:
    """A recipe file: the valid one with one part replaced, an arbitrary document, or YAML with
    anchors, aliases and repeated keys written by hand."""
    kind = draw(st.sampled_from(["mutated", "arbitrary", "anchors", "duplicate", "text"]))
    if kind == "mutated":
        doc = _recipe_doc()
        path = draw(st.sampled_from(list(_paths(doc))))
        return yaml.safe_dump(_replace(doc, path, draw(yaml_docs)))
    if kind == "arbitrary":
        return yaml.safe_dump(draw(yaml_docs))
    if kind == "anchors":
        fan = draw(st.integers(1, 12))
        depth = draw(st.integers(1, 8))
        lines = ["a0: &a0 [" + ", ".join(["x"] * fan) + "]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, depth)]
        return RECIPES[RECIPE_ID] + "\n".join(lines) + "\n"
    if kind == "duplicate":
        text = RECIPES[RECIPE_ID].splitlines()
        index = draw(st.integers(0, len(text) - 1))
        return "\n".join(text[: index + 1] + [text[index]] + text[index + 1:]) + "\n"
    return draw(st.text(max_size=300))


# ----------------------------------------------------------------------------- properties
@PROFILE
@given(data=st.data())
def test_settings_as_arbitrary_text(world, tmp_path_factory, monkeypatch, capsys, data):
    tmp = tmp_path_factory.mktemp("s")
    env = {**base_env(world, tmp), **data.draw(settings_env(world))}
    before = _snapshot(world["canary"])
    command = data.draw(st.sampled_from([["plan", "--json"], ["plan"], ["serve", "--dry-run", "--json"]]))
    code, out, err = run_cli(command, env, monkeypatch, capsys)
    check_invariants(code, out, err, world, before)


@PROFILE
@given(args=engine_args(), command=st.sampled_from([["plan", "--json"], ["plan"]]))
def test_engine_args_as_arbitrary_json(world, tmp_path_factory, monkeypatch, capsys, args, command):
    tmp = tmp_path_factory.mktemp("e")
    env = {**base_env(world, tmp), "AIM_ENGINE_ARGS": args}
    before = _snapshot(world["canary"])
    code, out, err = run_cli(command, env, monkeypatch, capsys)
    check_invariants(code, out, err, world, before)
    if code == 0 and command == ["plan", "--json"]:
        argv = json.loads(out)["launch"]["argv"]
        assert not any("\x00" in a for a in argv)


@PROFILE
@given(text=recipe_text(), as_model=st.booleans())
def test_recipe_and_model_yaml_at_boot_and_in_validate(world, tmp_path_factory, monkeypatch, capsys, text, as_model):
    tmp = tmp_path_factory.mktemp("y")
    env = base_env(world, tmp)
    directory = Path(env["AIM_MODELS_DIR" if as_model else "AIM_RECIPES_DIR"])
    target = directory / ("extra.yaml" if as_model else f"{RECIPE_ID}.yaml")
    target.write_text(text, encoding="utf-8")
    before = _snapshot(world["canary"])
    code, out, err = run_cli(["plan", "--json"], env, monkeypatch, capsys)
    check_invariants(code, out, err, world, before)
    code, out, err = run_cli(["validate", "--model" if as_model else "--recipe", str(target),
                              "--models-dir", env["AIM_MODELS_DIR"]], env, monkeypatch, capsys)
    check_invariants(code, out, err, world, before)


# ----------------------------------------------------------- a handful of real processes
def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))


REAL_CASES = {
    "alias bomb": ("AIM_RECIPES_DIR", 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi"))),
    "huge gpu count": ("AIM_GPU_COUNT", "1" + "0" * 30),
    "nul in engine args": ("AIM_ENGINE_ARGS", json.dumps({"--api-key": SECRET, "--seed": "1\x002"})),
    "secret flag name": ("AIM_ENGINE_ARGS", json.dumps({f"--api-key={SECRET}": True})),
    "odd revision": ("AIM_MODEL_REVISION", "-" + "r" * 5000),
}


@pytest.mark.parametrize("case", sorted(REAL_CASES))
def test_real_processes_stay_bounded_and_quiet(world, tmp_path, case):
    name, value = REAL_CASES[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "HF_")) or k.startswith("AIM_TEST_")}
    env.update(base_env(world, tmp_path))
    if name == "AIM_RECIPES_DIR":
        Path(env["AIM_RECIPES_DIR"], "bomb.yaml").write_text(value)
    else:
        env[name] = value
    before = _snapshot(world["canary"])
    proc = subprocess.run([sys.executable, "-m", "aim_engine", "plan", "--json"], env=env, capture_output=True,
                          text=True, timeout=HANG_LIMIT_S, preexec_fn=_cap_memory)
    check_invariants(proc.returncode, proc.stdout, proc.stderr, world, before)
