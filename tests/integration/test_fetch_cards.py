"""`aim-engine models fetch-cards` against a local Hugging Face-compatible hub (real HTTP on
127.0.0.1, port 0) with the real huggingface_hub client: in sync, drift (check and update), a
gated repo (401 without a token, works with a granted one, token never printed), 429 then
success, a missing repo (404), and a single-file checkpoint without an index.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aim_engine.catalog import cards
from aim_engine.cache.download import RetryPolicy
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.support.hf_server import Fault, HubServer
from tests.unit.test_cards import QWEN3_8B

REPO = Path(__file__).resolve().parents[2]
QWEN_TOTAL = 16381470720
FP8_TOTAL = 9436551168          # the derived figure in models/qwen3-8b.yaml
AWQ_TOTAL = 6098479104
TOKEN = "hf_secretTOKENvalue123"


def _repo(root: Path, name: str, config: dict | None, total: int | None) -> Path:
    d = root / name.replace("/", "__")
    d.mkdir(parents=True)
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    if total is not None:
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": {"lm_head.weight": "model-00001-of-00001.safetensors"}}))
    return d


def _models_dir(tmp: Path, *names: str) -> Path:
    d = tmp / "models"
    d.mkdir()
    for name in names:
        shutil.copy(REPO / "models" / name, d / name)
    return d


def _settings(hub: HubServer, token: str | None = None) -> Settings:
    env = {"HF_ENDPOINT": hub.url}
    if token:
        env["HF_TOKEN"] = token
    return Settings.from_env(env)


def _run(models: Path, settings: Settings, check: bool, model: str | None = None) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = cards.run(models, settings, check=check, model=model, out=lines.append, err=lines.append)
    return code, lines


@pytest.fixture
def hub(tmp_path: Path):
    with HubServer() as server:
        server.add_repo("Qwen/Qwen3-8B", _repo(tmp_path / "repos", "Qwen/Qwen3-8B", QWEN3_8B, QWEN_TOTAL))
        server.add_repo("Qwen/Qwen3-8B-FP8", _repo(tmp_path / "repos", "Qwen/Qwen3-8B-FP8", QWEN3_8B, FP8_TOTAL))
        server.add_repo("Qwen/Qwen3-8B-AWQ", _repo(tmp_path / "repos", "Qwen/Qwen3-8B-AWQ", QWEN3_8B, AWQ_TOTAL))
        yield server


def test_in_sync_model_checks_clean(hub: HubServer, tmp_path: Path) -> None:
    models = _models_dir(tmp_path, "qwen3-8b.yaml")
    before = (models / "qwen3-8b.yaml").read_text()
    code, lines = _run(models, _settings(hub), check=True)
    assert code == 0, lines
    assert lines == ["qwen3-8b.yaml: in sync with Qwen/Qwen3-8B"]
    assert (models / "qwen3-8b.yaml").read_text() == before
    # The files really came from the server: config and index of the model, index of each variant.
    assert hub.file_requests("Qwen/Qwen3-8B", "config.json") >= 1
    assert hub.file_requests("Qwen/Qwen3-8B-FP8", "model.safetensors.index.json") >= 1


def test_drift_is_reported_then_fixed_preserving_comments(hub: HubServer, tmp_path: Path) -> None:
    repos = tmp_path / "repos2"
    hub.add_repo("Qwen/Qwen3-8B", _repo(repos, "Qwen/Qwen3-8B", {**QWEN3_8B, "max_position_embeddings": 131072},
                                        QWEN_TOTAL), revision="main")
    hub.add_repo("Qwen/Qwen3-8B-FP8", _repo(repos, "Qwen/Qwen3-8B-FP8", QWEN3_8B, FP8_TOTAL + 2048), revision="main")
    models = _models_dir(tmp_path, "qwen3-8b.yaml")
    path = models / "qwen3-8b.yaml"
    before = path.read_text()

    code, lines = _run(models, _settings(hub), check=True)
    assert code == 1
    assert "  max_position_embeddings: 40960 -> 131072" in lines
    assert f"  variants[0].weights_bytes: {FP8_TOTAL} -> {FP8_TOTAL + 2048}" in lines
    assert path.read_text() == before                     # --check never writes

    code, lines = _run(models, _settings(hub), check=False)
    assert code == 0 and "qwen3-8b.yaml: updated from the hub (Qwen/Qwen3-8B):" in lines
    after = path.read_text()
    doc = yaml.safe_load(after)
    assert doc["max_position_embeddings"] == 131072 and doc["variants"][0]["weights_bytes"] == FP8_TOTAL + 2048
    # Only the two values changed: every other line is byte-identical, comments included.
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 2 and len(before.splitlines()) == len(after.splitlines())
    assert "# derived" not in changed[1][1]                 # the fetched figure is no longer derived
    assert "# native 32,768" in after                        # the maxpos comment survived

    code, lines = _run(models, _settings(hub), check=True)
    assert code == 0 and lines == ["qwen3-8b.yaml: in sync with Qwen/Qwen3-8B"]


def test_gated_model_needs_a_granted_token_which_is_never_printed(hub: HubServer, tmp_path: Path) -> None:
    llama = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
             "max_position_embeddings": 131072, "model_type": "llama", "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 8, "torch_dtype": "bfloat16", "vocab_size": 128256}
    hub.add_repo("meta-llama/Llama-3.1-8B-Instruct",
                 _repo(tmp_path / "repos", "meta-llama/Llama-3.1-8B-Instruct", llama, 16060522496), gated=True)
    for variant, total in (("amd/Llama-3.1-8B-Instruct-FP8-KV", 9081200640),
                           ("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", 5727854592)):
        hub.add_repo(variant, _repo(tmp_path / "repos", variant, None, total))
    models = _models_dir(tmp_path, "llama-3.1-8b-instruct.yaml")

    with pytest.raises(AimError, match="could not fetch 1 model card") as err:
        _run(models, _settings(hub), check=True)
    code_lines: list[str] = []
    with pytest.raises(AimError):
        cards.run(models, _settings(hub, token=TOKEN), check=True, out=code_lines.append, err=code_lines.append)
    text = "\n".join(code_lines)
    # worded by the one hub-error translator (cache.download.translate), naming the file it read
    assert "rejected HF_TOKEN (HTTP 401: invalid or expired token) for meta-llama/Llama-3.1-8B-Instruct/config.json" \
        in text
    assert TOKEN not in text and TOKEN not in str(err.value)    # an unknown token: refused, never echoed

    hub.add_token(TOKEN, grant=[])                              # a valid token without access to the repo
    code_lines.clear()
    with pytest.raises(AimError):
        cards.run(models, _settings(hub, token=TOKEN), check=True, out=code_lines.append, err=code_lines.append)
    assert "meta-llama/Llama-3.1-8B-Instruct is a gated model and the account of HF_TOKEN has no access" in \
        "\n".join(code_lines)

    hub.add_token(TOKEN, grant=["meta-llama/Llama-3.1-8B-Instruct"])
    code, lines = _run(models, _settings(hub, token=TOKEN), check=True)
    assert code == 0, lines
    assert all(TOKEN not in line for line in lines)


def test_gated_error_from_fetch_card_names_the_model(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/gated", _repo(tmp_path / "repos", "org/gated", QWEN3_8B, QWEN_TOTAL), gated=True)
    with pytest.raises(AimError) as err:
        cards.fetch_card("org/gated", _settings(hub))
    assert "org/gated is a gated model and HF_TOKEN is not set" in str(err.value)


def test_rate_limit_is_retried_until_success(hub: HubServer, tmp_path: Path) -> None:
    hub.add_fault(Fault(path="/Qwen/Qwen3-8B/resolve/*/config.json", status=429, times=2, retry_after=0))
    hub.reset_stats()
    card = cards.fetch_card("Qwen/Qwen3-8B", _settings(hub), policy=RetryPolicy(attempts=4, base=0.05))
    assert card.config == QWEN3_8B and card.weights_bytes == QWEN_TOTAL
    paths = hub.stats()["paths"]
    config_requests = sum(n for p, v in paths.items() if p.endswith("/config.json")
                          for m, n in v.items() if m in ("GET", "HEAD"))
    assert config_requests >= 3      # two 429 answers, then the request that succeeded


def test_server_errors_that_persist_become_a_clear_error(hub: HubServer) -> None:
    hub.add_fault(Fault(path="/Qwen/Qwen3-8B/resolve/*/config.json", status=503, times=None, retry_after=0))
    with pytest.raises(AimError, match="HTTP 503 for Qwen/Qwen3-8B/config.json after retries"):
        cards.fetch_card("Qwen/Qwen3-8B", _settings(hub), policy=RetryPolicy(attempts=2, base=0.01),
                         sleep=lambda s: None)


def test_missing_repo_is_a_clear_error(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(AimError, match="model 'org/does-not-exist' was not found on .*HF_TOKEN is not set"):
        cards.fetch_card("org/does-not-exist", _settings(hub))
    hub.add_token("hf_valid", grant=[])
    with pytest.raises(AimError, match="model 'org/does-not-exist' was not found on .*HF_TOKEN has no access"):
        cards.fetch_card("org/does-not-exist", _settings(hub, token="hf_valid"))


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> int:
    """Write a valid safetensors file; returns the tensor byte total."""
    header, offset = {}, 0
    for name, (dtype, shape, width) in tensors.items():
        size = width
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return offset


def test_single_file_checkpoint_is_measured_from_its_header(hub: HubServer, tmp_path: Path) -> None:
    d = _repo(tmp_path / "repos", "org/single", QWEN3_8B, None)
    total = _safetensors(d / "model.safetensors", {"a": ("BF16", [16, 8], 2), "b": ("F32", [3], 4)})
    hub.add_repo("org/single", d)
    card = cards.fetch_card("org/single", _settings(hub))
    assert (card.weights_bytes, card.source) == (16 * 8 * 2 + 3 * 4, "model.safetensors") and total == 268


def test_model_filter_and_cli_exit_codes(hub: HubServer, tmp_path: Path) -> None:
    models = _models_dir(tmp_path, "qwen3-8b.yaml", "phi-4.yaml")
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "aim_engine", "models", "fetch-cards", "--models-dir", str(models), "--check",
           "--model", "qwen3:8b"]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "qwen3-8b.yaml: in sync" in done.stdout and "phi-4" not in done.stdout

    # phi-4 is not on this hub: a clean error (exit 1, no traceback), naming the model.
    done = subprocess.run(cli[:-2] + ["--model", "phi4"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "phi-4.yaml: error: model 'microsoft/phi-4' was not found" in done.stderr and "Traceback" not in done.stderr

    unknown = subprocess.run(cli[:-2] + ["--model", "no-such-model"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert unknown.returncode == 1 and "no model file" in unknown.stderr


def test_seed_cli_fetch_model_cards_does_the_same(hub: HubServer, tmp_path: Path) -> None:
    models = _models_dir(tmp_path, "qwen3-8b.yaml")
    text = (models / "qwen3-8b.yaml").read_text()
    (models / "qwen3-8b.yaml").write_text(text.replace("layers: 36", "layers: 35"))
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    seed = [sys.executable, "-c", "import sys; from aim_engine.seed_cli import main; sys.exit(main())",
            "--fetch-model-cards", "--models-dir", str(models)]
    done = subprocess.run(seed + ["--check"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "layers: 35 -> 36" in done.stdout, done.stdout + done.stderr
    done = subprocess.run(seed, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (models / "qwen3-8b.yaml").read_text() == text
