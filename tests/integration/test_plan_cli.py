"""`aim-engine plan` and `aim-engine recipes list` as real subprocesses.

Hardware comes from sysfs fixture trees of the GPUs asked for (driver-reported memory; `aim`
turns AIM_GPU_MODEL/AIM_GPU_COUNT into such a tree) or from no GPU at all; the catalog is the shipped one plus a user
catalog written here (AIM_MODELS_DIR/AIM_RECIPES_DIR), so the assertions do not depend on the
shipped recipes of the day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import sysfs_tree

MODEL = """\
model_id: acme/Test-70B
slug: acme-test-70b
aliases: [acme70b]
huggingface_id: acme/Test-70B
architecture: LlamaForCausalLM
parameters: {total: 70000000000, active: 70000000000}
layers: 80
hidden_size: 8192
intermediate_size: 28672
attention: {kind: gqa, heads: 64, kv_heads: 8, head_dim: 128}
max_position_embeddings: 131072
vocab_size: 128256
native_dtype: bf16
weights_bytes: 140000000000
license: test
gated: false
trust_remote_code: false
variants:
  - {huggingface_id: acme/Test-70B-FP8, precision: fp8, quantization: fp8, weights_bytes: 72000000000}
"""


def _config(gpus: int, context: int, batch: int, model: str = "acme/Test-70B", dtype: str = "bfloat16") -> str:
    return (f'  "{gpus}_gpu":\n    enabled: true\n    args:\n      --model: {model}\n      --dtype: {dtype}\n'
            f'      --tensor-parallel-size: "{gpus}"\n      --max-batch-size: "{batch}"\n'
            f'      --max-context-len: "{context}"\n      --gpu-memory-utilization: "0.9"\n')


RECIPES = {
    # 1 GPU at 128K x 64 cannot fit (needs less context); 2, 4, 8 GPUs at 8K fit.
    "acme-test-70b-mi300x-bf16": "recipe_id: acme-test-70b-mi300x-bf16\nmodel_id: acme/Test-70B\n"
    "huggingface_id: acme/Test-70B\nhardware: MI300X\nprecision: bf16\nvllm_serve:\n"
    + _config(1, 131072, 64) + _config(2, 8192, 64) + _config(4, 8192, 64) + _config(8, 8192, 64)
    + "sglang_serve:\n" + _config(2, 8192, 64),
    "acme-test-70b-mi300x-fp8": "recipe_id: acme-test-70b-mi300x-fp8\nmodel_id: acme/Test-70B\n"
    "huggingface_id: acme/Test-70B-FP8\nhardware: MI300X\nprecision: fp8\nvllm_serve:\n"
    + _config(1, 8192, 32, "acme/Test-70B-FP8", "auto"),
    "acme-test-70b-mi355x-bf16": "recipe_id: acme-test-70b-mi355x-bf16\nmodel_id: acme/Test-70B\n"
    "huggingface_id: acme/Test-70B\nhardware: MI355X\nprecision: bf16\nvllm_serve:\n" + _config(1, 8192, 64),
}


@pytest.fixture
def env(tmp_path: Path, clean_env: dict[str, str]) -> dict[str, str]:
    models, recipes, sysfs = tmp_path / "models", tmp_path / "recipes", tmp_path / "sysfs"
    for d in (models, recipes, sysfs):
        d.mkdir()
    (models / "acme-test-70b.yaml").write_text(MODEL)
    for rid, text in RECIPES.items():
        (recipes / f"{rid}.yaml").write_text(text)
    return dict(clean_env, AIM_MODELS_DIR=str(models), AIM_RECIPES_DIR=str(recipes), AIM_SYSFS_ROOT=str(sysfs),
                AIM_CACHE_PATH=str(tmp_path / "cache"), AIM_LOG_LEVEL="warning")


def aim(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI. `AIM_GPU_MODEL=M` (with AIM_GPU_COUNT=N) is turned into a sysfs tree of N
    such GPUs as the driver reports them (287.98 GiB for an MI355X, not 288): selection is
    tested on detected memory, not on the spec table's nominal figures."""
    extra = dict(extra)
    model = extra.pop("AIM_GPU_MODEL", None)
    if model is not None:
        count = int(extra.get("AIM_GPU_COUNT", "8"))
        root = Path(env["AIM_SYSFS_ROOT"]).parent / f"sysfs-{model.lower()}-{count}"
        if not root.exists():
            sysfs_tree.of_model(model, count).write(root)
        extra["AIM_SYSFS_ROOT"] = str(root)
    return subprocess.run([sys.executable, "-m", "aim_engine", *args], env=dict(env, **extra),
                          capture_output=True, text=True, timeout=120)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def test_plan_json_on_8_mi300x(env: dict[str, str]) -> None:
    out = json.loads(_ok(aim(env, "plan", "--json", AIM_MODEL_ID="acme70b", AIM_GPU_MODEL="MI300X",
                             AIM_GPU_COUNT="8")).stdout)
    plan, launch = out["plan"], out["launch"]
    assert plan["recipe_id"] == "acme-test-70b-mi300x-bf16" and plan["engine"] == "vllm"
    assert (plan["tensor_parallel"], plan["data_parallel"]) == (8, 1)
    assert plan["served_model_name"] == "acme70b"
    argv = launch["argv"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--max-model-len") + 1] == "8192"
    assert "acme/Test-70B" in argv and launch["env"]["HF_HOME"].endswith("cache/huggingface")
    reasons = {(r["recipe_id"], r["engine"], r["gpus"]): r["reason"] for r in plan["rejected"]}
    assert "does NOT fit" in reasons[("acme-test-70b-mi300x-bf16", "vllm", 1)]
    assert "hardware" in reasons[("acme-test-70b-mi355x-bf16", None, None)]
    assert out["hardware"]["gpu_count"] == 8


def test_plan_throughput_fills_gpus_with_replicas(env: dict[str, str]) -> None:
    out = json.loads(_ok(aim(env, "plan", "--json", AIM_MODEL_ID="acme/Test-70B", AIM_GPU_MODEL="MI300X",
                             AIM_GPU_COUNT="8", AIM_METRIC="throughput")).stdout)
    assert (out["plan"]["tensor_parallel"], out["plan"]["data_parallel"]) == (2, 4)
    argv = out["launch"]["argv"]
    assert argv[argv.index("--data-parallel-size") + 1] == "4"


def test_plan_text_explains_and_masks_secrets(env: dict[str, str]) -> None:
    token = "hf_" + "S3cret" * 6
    proc = _ok(aim(env, "plan", AIM_MODEL_ID="acme70b", AIM_GPU_MODEL="MI325X", AIM_GPU_COUNT="1", HF_TOKEN=token))
    text = proc.stdout
    for section in ("hardware:", "recipe:", "why:", "rejected (", "command:", "environment (set or changed"):
        assert section in text, text
    assert "fallback from MI300X" in text and "same-family fallback" in text
    assert token not in proc.stdout + proc.stderr
    assert "PATH=" not in text          # only what the agent sets, not the whole environment


def test_plan_on_a_mixed_node_restricts_the_engine_to_the_chosen_gpus(env: dict[str, str], tmp_path: Path) -> None:
    """A real sysfs tree (4x MI300X, 2x MI210, a Radeon) with ROCR_VISIBLE_DEVICES putting the
    MI210s first: the engine gets HIP=CUDA_VISIBLE_DEVICES indexing the MI300X group inside the
    ROCR-visible list, and ROCR_VISIBLE_DEVICES untouched."""
    from tests.support import fake_amdsmi, sysfs_tree

    root = tmp_path / "mixed"
    sysfs_tree.build("mixed", root)
    base = {k: v for k, v in env.items() if not k.startswith(("ROCR_", "HIP_", "CUDA_"))}
    base.update(AIM_SYSFS_ROOT=str(root), ROCR_VISIBLE_DEVICES="4,5,0,1,2,3",
                PYTHONPATH=os.pathsep.join([str(fake_amdsmi.BROKEN), *filter(None, [env.get("PYTHONPATH")])]))
    out = json.loads(_ok(aim(base, "plan", "--json", AIM_MODEL_ID="acme70b")).stdout)
    plan, launch = out["plan"], out["launch"]
    assert (out["hardware"]["gpu_model"], out["hardware"]["gpu_count"], out["hardware"]["visible_count"]) == \
        ("MI300X", 4, 6)
    assert plan["tensor_parallel"] == 4 and plan["visible_devices"] == "2,3,4,5"
    assert launch["env"]["HIP_VISIBLE_DEVICES"] == launch["env"]["CUDA_VISIBLE_DEVICES"] == "2,3,4,5"
    assert "ROCR_VISIBLE_DEVICES" not in launch["env"]            # not changed by the agent
    text = _ok(aim(base, "plan", AIM_MODEL_ID="acme70b")).stdout
    assert "  HIP_VISIBLE_DEVICES=2,3,4,5" in text and "  CUDA_VISIBLE_DEVICES=2,3,4,5" in text


def test_fp8_on_mi250_is_a_clean_error(env: dict[str, str]) -> None:
    proc = aim(env, "plan", AIM_MODEL_ID="acme70b", AIM_GPU_MODEL="MI250", AIM_GPU_COUNT="8", AIM_PRECISION="fp8")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "AIM_PRECISION=fp8 is not supported on MI250 (gfx90a)" in proc.stderr


def test_pinned_recipe_that_does_not_fit_lists_alternatives(env: dict[str, str]) -> None:
    proc = aim(env, "plan", AIM_MODEL_ID="acme70b", AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="1",
               AIM_RECIPE_ID="acme-test-70b-mi300x-bf16")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "AIM_RECIPE_ID=acme-test-70b-mi300x-bf16 cannot run on 1x MI300X" in proc.stderr
    assert "recipes that do run here: acme-test-70b-mi300x-fp8" in proc.stderr


def test_cpu_plan_for_a_local_model_directory(env: dict[str, str], tmp_path: Path) -> None:
    from tests.support.tiny_repo import make_repo

    repo = make_repo(tmp_path / "tiny-demo", decoys=False)
    out = json.loads(_ok(aim(env, "plan", "--json", AIM_MODEL_ID=str(repo.path))).stdout)
    plan, argv = out["plan"], out["launch"]["argv"]
    assert plan["target"] == "cpu" and plan["synthesized"] and plan["served_model_name"] == "tiny-demo"
    assert str(repo.path.resolve()) in argv
    assert argv[argv.index("--dtype") + 1] == "float32"
    assert argv[argv.index("--max-model-len") + 1] == "512"       # the tiny model's max positions


def test_recipes_list_statuses(env: dict[str, str]) -> None:
    out = json.loads(_ok(aim(env, "recipes", "list", "--json", "--model", "acme70b", "--all",
                             AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="2")).stdout)
    rows = {(r["recipe_id"], r["engine"], r["gpus"]): r for r in out["recipes"]}
    one = rows[("acme-test-70b-mi300x-bf16", "vllm", 1)]
    assert one["status"] == "needs less context" and 0 < one["fits_context"] < 131072
    assert rows[("acme-test-70b-mi300x-bf16", "vllm", 2)]["status"] == "runnable"
    assert rows[("acme-test-70b-mi300x-bf16", "vllm", 4)]["status"] == "incompatible"
    assert rows[("acme-test-70b-mi300x-fp8", "vllm", 1)]["status"] == "runnable"
    other = rows[("acme-test-70b-mi355x-bf16", "vllm", 1)]
    assert other["status"] == "incompatible" and "gfx950" in other["reason"]
    assert all(r["gib_per_gpu"] for r in rows.values())
    # Without --all, the other GPU family's recipe is not listed.
    text = _ok(aim(env, "recipes", "list", "--model", "acme70b", AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="2")).stdout
    assert "acme-test-70b-mi300x-bf16" in text and "mi355x" not in text and "needs less context" in text


def test_recipes_list_unknown_model(env: dict[str, str]) -> None:
    proc = aim(env, "recipes", "list", "--model", "nope")
    assert proc.returncode == 1 and "--model 'nope' is not a catalog model" in proc.stderr
    assert "acme-test-70b" in proc.stderr
