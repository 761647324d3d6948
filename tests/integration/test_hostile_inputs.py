"""Issue 12 (input side): hostile and broken input through the real CLI and the real boot.

Each test is one finding of the issue, written so it failed on the code before the fix: an
alias bomb, unbounded and loosely parsed numbers, secrets in every output channel, odd catalog
directory entries, duplicate YAML keys, long and odd names. The catalog is a user catalog
written here (AIM_MODELS_DIR/AIM_RECIPES_DIR) over an empty sysfs root with GPU overrides, as in
test_plan_cli.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_plan_cli import MODEL, RECIPES

SECRET = "sk-PLANTED0secret0VALUE"
PASSWORD = "PLANTED0password"
QTOKEN = "PLANTED0querytoken"
PLANTED = (SECRET, PASSWORD, QTOKEN)
RECIPE_ID = "acme-test-70b-mi300x-bf16"
MEMORY_LIMIT = 1024**3          # per process: an alias bomb must fail long before this


@pytest.fixture
def env(tmp_path: Path, clean_env: dict[str, str]) -> dict[str, str]:
    models, recipes, sysfs = tmp_path / "models", tmp_path / "recipes", tmp_path / "sysfs"
    for d in (models, recipes, sysfs):
        d.mkdir()
    (models / "acme-test-70b.yaml").write_text(MODEL)
    (recipes / f"{RECIPE_ID}.yaml").write_text(RECIPES[RECIPE_ID])
    return dict(clean_env, AIM_MODELS_DIR=str(models), AIM_RECIPES_DIR=str(recipes), AIM_SYSFS_ROOT=str(sysfs),
                AIM_CACHE_PATH=str(tmp_path / "cache"), AIM_LOG_LEVEL="info", AIM_LOG_FORMAT="json",
                AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="8", AIM_MODEL_ID="acme/Test-70B")


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def aim(env: dict[str, str], *args: str, command: str = "aim_engine", **extra: str) -> subprocess.CompletedProcess:
    """The real CLI in a real process, with its memory capped and a time bound."""
    return subprocess.run([sys.executable, "-m", command, *args], env=dict(env, **extra), capture_output=True,
                          text=True, timeout=90, preexec_fn=_limit_memory)


def user_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "this is a bug" not in proc.stderr, proc.stderr[-2000:]
    return proc.stderr


def alias_bomb() -> str:
    """~1 KB of YAML that expands to 9^9 (~387 million) strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- item 2: alias bomb
def test_alias_bomb_recipe_is_refused_by_validate(tmp_path, env):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert len(bomb.read_bytes()) < 1100
    err = aim(env, "validate", "--recipe", str(bomb))
    assert err.returncode == 1 and "Traceback" not in err.stderr, err.stderr[-1000:]
    assert "bomb.yaml" in err.stdout and "expands to more than" in err.stdout


def test_alias_bomb_is_refused_by_the_seed_selector(tmp_path, env):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    out = aim(env, "--validate", "--recipe", str(bomb), command="aim_engine.seed_cli")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-1000:]
    assert "bomb.yaml" in out.stdout and "expands to more than" in out.stdout


@pytest.mark.parametrize("kind", ["recipe", "model"])
def test_alias_bomb_in_a_user_catalog_fails_the_boot_naming_the_file(tmp_path, env, kind):
    directory = Path(env["AIM_RECIPES_DIR" if kind == "recipe" else "AIM_MODELS_DIR"])
    (directory / "bomb.yaml").write_text(alias_bomb())
    stderr = user_error(aim(env, "plan"))
    assert "bomb.yaml" in stderr and "expands to more than" in stderr


# --------------------------------------------------------------------- item 10: duplicate keys
DUPLICATE = RECIPES[RECIPE_ID].replace("precision: bf16\n", "precision: bf16\nprecision: fp8\n")


def test_duplicate_keys_are_reported_by_validate_with_file_line_and_key(tmp_path, env):
    path = tmp_path / f"{RECIPE_ID}.yaml"
    path.write_text(DUPLICATE)
    out = aim(env, "validate", "--recipe", str(path), "--models-dir", env["AIM_MODELS_DIR"])
    assert out.returncode == 1
    line = DUPLICATE.splitlines().index("precision: fp8") + 1
    assert f"{RECIPE_ID}.yaml:{line}: invalid YAML: duplicate key 'precision'" in out.stdout, out.stdout


def test_a_boot_refuses_a_recipe_with_a_duplicate_key(env):
    Path(env["AIM_RECIPES_DIR"], f"{RECIPE_ID}.yaml").write_text(DUPLICATE)
    stderr = user_error(aim(env, "plan"))
    assert f"{RECIPE_ID}.yaml" in stderr and "duplicate key 'precision'" in stderr


# ------------------------------------------------------------ items 3 and 12: bounded numbers
@pytest.mark.parametrize("name, value, allowed", [
    ("AIM_GPU_COUNT", "1" + "0" * 30, "from 0 to 64"),
    ("AIM_GPU_COUNT", "10000000", "from 0 to 64"),
    ("AIM_PORT", "1_000", "from 1 to 65535"),
    ("AIM_PORT", "\u0661\u0660\u0660\u0660", "from 1 to 65535"),
    ("AIM_FAIL_GRACE", "nan", "from 0 to 3600"),
    ("AIM_LOCK_TIMEOUT", "inf", "from 0 to 86400"),
])
def test_numbers_out_of_range_or_loosely_written_exit_2_saying_the_range(env, name, value, allowed):
    stderr = user_error(aim(env, "plan", **{name: value}), code=2)
    assert name in stderr and allowed in stderr


# --------------------------------------------------------------- items 4 and 5: secrets
def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for planted in PLANTED:
            assert planted not in text, f"{planted} leaked: ...{text[max(0, text.find(planted) - 200):][:400]}"


SECRET_ARGS = [
    {"--api-key": SECRET},
    {"--api_key": SECRET},
    {"--hf-token": SECRET},
    {"--api-key": [SECRET]},
    {"--override-generation-config": {"api_key": SECRET}},
]


@pytest.mark.parametrize("args", SECRET_ARGS, ids=lambda a: next(iter(a)))
@pytest.mark.parametrize("command", [["plan", "--json"], ["plan"], ["serve", "--dry-run", "--json"]])
def test_plan_output_masks_secret_flags_and_url_credentials(env, args, command):
    proc = aim(env, *command, AIM_ENGINE_ARGS=json.dumps(args),
               HF_ENDPOINT=f"http://user:{PASSWORD}@127.0.0.1:9/?token={QTOKEN}")
    _assert_no_secret(proc.stdout, proc.stderr)
    if proc.returncode == 0 and "--json" in command:
        data = json.loads(proc.stdout)
        assert data["settings"]["hf_endpoint"] == "http://***@127.0.0.1:9/?token=***"


def test_a_secret_in_a_flag_name_is_not_echoed_by_the_error(env):
    proc = aim(env, "plan", AIM_ENGINE_ARGS=json.dumps({f"--api-key={SECRET}": True}))
    stderr = user_error(proc)
    assert "--api-key=***" in stderr
    _assert_no_secret(proc.stdout, stderr)


def test_a_secret_in_the_settings_error_is_not_echoed(env):
    proc = aim(env, "plan", AIM_ENGINE_ARGS=json.dumps({f"api-key={SECRET}": True}))
    _assert_no_secret(user_error(proc, code=2), proc.stdout)


def test_url_credentials_never_reach_stderr_or_logs_on_a_hub_error(env, tmp_path):
    proc = aim(env, "plan", AIM_MODEL_ID="nobody/nothing", HF_ENDPOINT=f"http://user:{PASSWORD}@127.0.0.1:9/?token={QTOKEN}")
    assert proc.returncode in (1, 2)
    _assert_no_secret(proc.stdout, proc.stderr)


# ------------------------------------------------ items 6 and 15: odd catalog entries
def _odd_entries(directory: Path) -> dict[str, str]:
    """name -> what the error must say."""
    (directory / "loop.yaml").symlink_to("loop.yaml")
    (directory / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(directory / "fifo.yaml")
    (directory / "folder.yaml").mkdir()
    return {"loop.yaml": "a symbolic link loop", "zero.yaml": "a character device, not a regular file",
            "fifo.yaml": "a FIFO (named pipe), not a regular file", "folder.yaml": "a directory, not a regular file"}


def test_odd_catalog_entries_get_the_same_accurate_errors_at_boot_and_in_validate(env, tmp_path):
    recipes = Path(env["AIM_RECIPES_DIR"])
    expected = _odd_entries(recipes)
    boot = user_error(aim(env, "plan"))
    check = aim(env, "validate", "--recipes-dir", str(recipes), "--models-dir", env["AIM_MODELS_DIR"])
    assert check.returncode == 1
    for name, words in expected.items():
        assert f"{name}: the file is {words}" in check.stdout, check.stdout
    # boot lists at most ten problems, the same ones
    for name, words in expected.items():
        assert f"{name}: the file is {words}" in boot, boot


@pytest.mark.parametrize("target, words", [("/etc/passwd", "is not a directory"),
                                           ("/nonexistent/dir", "does not exist")])
def test_a_catalog_directory_that_is_not_one_is_named_accurately(env, target, words):
    boot = user_error(aim(env, "plan", AIM_RECIPES_DIR=target))
    check = aim(env, "validate", "--recipes-dir", target)
    assert check.returncode == 2
    assert f"recipes directory {target} {words}" in boot
    assert f"recipes directory {target} {words}" in check.stderr


# ------------------------------------------------------- items 6, 11 and 16: names
@pytest.mark.parametrize("name, value, words", [
    ("AIM_MODEL_ID", "org/" + "x" * 5000, "too long"),
    ("AIM_MODEL_REVISION", "r" * 5000, "too long"),
    ("AIM_SERVED_MODEL_NAME", "--trust-remote-code", "starts with '-'"),
    ("AIM_SERVED_MODEL_NAME", "tiny\x1b]0;owned\x07", "control characters"),
])
def test_bad_names_exit_2_without_echoing_them_whole(env, name, value, words):
    stderr = user_error(aim(env, "plan", **{name: value}), code=2)
    assert name in stderr and words in stderr and len(stderr) < 1000


def test_a_home_of_nobody_is_a_clear_error(env):
    stderr = user_error(aim(env, "plan", AIM_MODEL_ID="~nouser/x"))
    assert "~nouser/x" in stderr


# ------------------------------------------------- item 7: AIM_ENGINE_ARGS values
@pytest.mark.parametrize("args, words", [
    ({"--tensor-parallel-size": "1000"}, "--tensor-parallel-size '1000' is not a whole number from 1 to 64"),
    ({"--tensor-parallel-size": "-1"}, "--tensor-parallel-size '-1' is not a whole number from 1 to 64"),
    ({"-tp": "-1"}, "-tp '-1' is not a whole number from 1 to 64"),
    ({"--data-parallel-size": "0"}, "--data-parallel-size '0' is not a whole number from 1 to 64"),
    ({"--gpu-memory-utilization": 7}, "--gpu-memory-utilization 7 is not a fraction above 0 and at most 1"),
    ({"--max-context-len": "1e30"}, "--max-context-len '1e30' is not a whole number from 1 to 16777216"),
    ({"--max_model_len": "1e30"}, "--max-model-len '1e30' is not a whole number"),
    ({"--seed": float("inf")}, "--seed inf is not a finite number"),
    ({"--trust-remote-code": "yes"}, "--trust-remote-code is a switch; 'yes' is not true/false"),
    ({"--seed": "1\x002"}, "contains control characters"),
])
def test_engine_args_values_obey_the_recipe_rules(env, args, words):
    stderr = user_error(aim(env, "plan", AIM_ENGINE_ARGS=json.dumps(args)))
    assert "AIM_ENGINE_ARGS" in stderr and words in stderr


def test_recipe_values_are_checked_by_the_same_rules(tmp_path, env):
    text = RECIPES[RECIPE_ID].replace('--gpu-memory-utilization: "0.9"', '--gpu-memory-utilization: "7"', 1)
    path = tmp_path / f"{RECIPE_ID}.yaml"
    path.write_text(text)
    out = aim(env, "validate", "--recipe", str(path), "--models-dir", env["AIM_MODELS_DIR"])
    assert out.returncode == 1
    assert "--gpu-memory-utilization '7' is not a fraction above 0 and at most 1 [arg-values]" in out.stdout


# ------------------------------------------------- item 17: the engine's port, checked first
def _serve_env(env: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    from tests.e2e.harness import free_port

    return dict(env, AIM_HEALTH_PORT=str(free_port()), AIM_FAIL_GRACE="0", **extra)


def test_an_engine_port_in_use_fails_the_boot_before_anything_else(env, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = aim(_serve_env(env, tmp_path, AIM_PORT=str(port)), "serve")
    stderr = user_error(proc)
    assert f"cannot listen for the engine's API on 0.0.0.0:{port} (AIM_PORT)" in stderr
    assert "Address already in use" in stderr


def test_a_privileged_engine_port_without_the_capability_is_a_clear_error(env, tmp_path):
    """Root without CAP_NET_BIND_SERVICE (setpriv drops it from the bounding set), as a
    container running as root with `capabilities: drop: [ALL]` is."""
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(reason="setpriv (util-linux) is not installed")
    proc = subprocess.run([setpriv, "--inh-caps=-net_bind_service", "--bounding-set=-net_bind_service",
                           sys.executable, "-m", "aim_engine", "serve"], env=_serve_env(env, tmp_path, AIM_PORT="81"),
                          capture_output=True, text=True, timeout=90, preexec_fn=_limit_memory)
    stderr = user_error(proc)
    assert "cannot listen for the engine's API on 0.0.0.0:81 (AIM_PORT)" in stderr and "below 1024" in stderr


# ------------------------------------------------- item 18: visibility and memory values
def test_a_malformed_visibility_list_on_a_gpu_node_fails_instead_of_planning_for_the_cpu(env, tmp_path):
    from tests.support import sysfs_tree

    sysfs_tree.build("mi300x-8", tmp_path / "node")
    node = {k: v for k, v in env.items() if k not in ("AIM_GPU_MODEL", "AIM_GPU_COUNT")}
    stderr = user_error(aim(node, "plan", AIM_SYSFS_ROOT=str(tmp_path / "node"), ROCR_VISIBLE_DEVICES="abc"))
    assert "ROCR_VISIBLE_DEVICES='abc'" in stderr and "hide every GPU" in stderr


def test_an_absurd_sysfs_memory_size_is_capped_to_the_gpu_table(env, tmp_path):
    from tests.support import sysfs_tree

    root = tmp_path / "node"
    sysfs_tree.build("mi300x-8", root)
    for bank in root.rglob("mem_banks/*/properties"):
        text = bank.read_text()
        if "heap_type 1" in text:
            bank.write_text(text.replace(text.split("size_in_bytes ")[1].split()[0], str(10**30)))
    node = {k: v for k, v in env.items() if k not in ("AIM_GPU_MODEL", "AIM_GPU_COUNT")}
    proc = aim(node, "detect", "--json", AIM_SYSFS_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    devices = json.loads(proc.stdout)["devices"]
    assert devices and all(d["memory_bytes"] == 192 * 1024**3 for d in devices)


# ------------------------------------------- item 10: the boot checks user files as validate does
def test_a_boot_refuses_a_user_recipe_that_validate_rejects(tmp_path, env):
    """The recipe says bf16 but loads the FP8 checkpoint: `validate` rejects it (checkpoint),
    so a boot through AIM_RECIPES_DIR must not serve it either."""
    text = RECIPES[RECIPE_ID].replace("huggingface_id: acme/Test-70B\n", "huggingface_id: acme/Test-70B-FP8\n", 1)
    Path(env["AIM_RECIPES_DIR"], f"{RECIPE_ID}.yaml").write_text(text)
    check = aim(env, "validate", "--recipes-dir", env["AIM_RECIPES_DIR"], "--models-dir", env["AIM_MODELS_DIR"])
    assert check.returncode == 1 and "[checkpoint]" in check.stdout
    stderr = user_error(aim(env, "plan"))
    assert f"{RECIPE_ID}.yaml" in stderr and "fp8 checkpoint but precision is bf16" in stderr


# ------------------------------------------------------------- item 16: huge echoes, summarised
def test_a_recipe_with_ten_thousand_bad_configs_is_summarised(tmp_path, env):
    head = RECIPES[RECIPE_ID].split("vllm_serve:")[0]
    configs = "".join(f'  "{n}_gpu":\n    enabled: true\n    args: {{--tensor-parallel-size: "1"}}\n'
                      for n in range(2, 10_002))
    path = tmp_path / f"{RECIPE_ID}.yaml"
    path.write_text(head + "vllm_serve:\n" + configs)
    out = aim(env, "validate", "--recipe", str(path), "--models-dir", env["AIM_MODELS_DIR"])
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert len(lines) < 200, len(lines)
    assert "more [tensor-parallel] problems (--format json lists all)" in out.stdout


# ------------------------------------------------ item 6: serve names the file, never "a bug"
def test_serve_names_a_broken_catalog_directory(tmp_path, env):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    proc = aim(_serve_env(env, tmp_path, AIM_RECIPES_DIR=str(loop)), "serve")
    stderr = user_error(proc)
    assert f"recipes directory {loop} is a symbolic link loop" in stderr


# ----------------------------------------- items 4 and 5: /status and the logs of a real boot
def test_status_and_logs_of_a_failed_boot_hold_no_planted_secret(env, tmp_path):
    """A real `serve`: secret flags in AIM_ENGINE_ARGS (one inside a flag name, which fails the
    render) and credentials in HF_ENDPOINT; /status, /health/ready and the log stay clean."""
    import signal

    from tests.e2e.harness import base_env, start_agent

    agent_env = base_env({k: v for k, v in env.items() if k.startswith(("AIM_", "HF_"))})
    agent_env.update(AIM_FAIL_GRACE="60", HF_ENDPOINT=f"http://user:{PASSWORD}@127.0.0.1:9/?token={QTOKEN}",
                     AIM_ENGINE_ARGS=json.dumps({"--api-key": SECRET, "--hf-token": [SECRET],
                                                 f"--api-key={SECRET}": True}))
    agent = start_agent(tmp_path / "agent", agent_env)
    try:
        status = agent.wait_phase("failed", timeout=90)
        ready = agent.probe("/health/ready")[1]
        agent.signal(signal.SIGTERM)
        agent.wait(30)
    finally:
        agent.kill_tree()
    _assert_no_secret(json.dumps(status), json.dumps(ready), agent.log())
    assert status["settings"]["hf_endpoint"] == "http://***@127.0.0.1:9/?token=***"
    assert status["settings"]["engine_args"]["--api-key"] == "***"


# --------------------------------------- item 6: mode-000 files and folders in a catalog
def _without_dac_override(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The CLI as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH: file modes then bind root
    too, as they bind the agent's user in a pod (`runAsNonRoot` or dropped capabilities)."""
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip(reason="needs root and setpriv (util-linux) to drop the file-permission override")
    return subprocess.run([setpriv, "--inh-caps=-dac_override,-dac_read_search",
                           "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "aim_engine", *args],
                          env=env, capture_output=True, text=True, timeout=90, preexec_fn=_limit_memory)


def test_unreadable_catalog_entries_are_named_at_boot_and_in_validate(env, tmp_path):
    recipes = Path(env["AIM_RECIPES_DIR"])
    locked = recipes / "locked.yaml"
    locked.write_text(RECIPES[RECIPE_ID])
    locked.chmod(0)
    sealed = tmp_path / "sealed"
    sealed.mkdir()
    sealed.chmod(0)
    try:
        boot = user_error(_without_dac_override(env, "plan"))
        check = _without_dac_override(env, "validate", "--recipes-dir", str(recipes))
        assert "locked.yaml: the file cannot be read: Permission denied" in boot
        assert check.returncode == 1 and "locked.yaml: the file cannot be read: Permission denied" in check.stdout
        sealed_boot = user_error(_without_dac_override(dict(env, AIM_RECIPES_DIR=str(sealed)), "plan"))
        sealed_check = _without_dac_override(env, "validate", "--recipes-dir", str(sealed))
        assert f"recipes directory {sealed} cannot be read: permission denied" in sealed_boot
        assert sealed_check.returncode == 2
        assert f"recipes directory {sealed} cannot be read: permission denied" in sealed_check.stderr
    finally:
        sealed.chmod(0o755)
        locked.chmod(0o644)
