"""AIM_MODEL_ID outside the catalog, read from the hub: each way the hub can fail gets its own
message (through the real huggingface_hub client, against the test hub or a closed port).

huggingface_hub 2.x reports a refused connection, a 403 and a missing file alike as an "entry not
found" error; the planner must not call an unreachable hub "no config.json", nor take 40 s to
say so.
"""

from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub
import pytest

from aim_engine.errors import AimError
from aim_engine.planner import model_source
from aim_engine.planner.model_source import resolve
from tests.support.hf_server import Fault, HubServer
from tests.support.tiny_repo import make_repo
from tests.unit.selection_cases import catalog_of, settings

EMPTY = catalog_of(())
TOKEN = "hf_" + "q" * 30
SIZES: dict[str, int] = {}


@pytest.fixture
def calls(monkeypatch):
    """Counts the client's metadata requests and full downloads (the real functions still run)."""
    counts = {"head": 0, "download": 0}
    real_head, real_download = huggingface_hub.get_hf_file_metadata, huggingface_hub.hf_hub_download

    def head(*args, **kwargs):
        counts["head"] += 1
        return real_head(*args, **kwargs)

    def download(*args, **kwargs):
        counts["download"] += 1
        return real_download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", head)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return counts


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    tiny = make_repo(root / "tiny", decoys=False)
    no_config = make_repo(root / "noconfig", decoys=False)
    (no_config.path / "config.json").unlink()
    single = make_repo(root / "single", shards=1, decoys=False)   # one model.safetensors, no index
    (single.path / "model.safetensors.index.json").unlink()
    (single.path / single.shards[0]).rename(single.path / "model.safetensors")
    SIZES["org/single"] = (single.path / "model.safetensors").stat().st_size
    with HubServer() as server:
        server.add_repo("org/tiny", tiny.path)
        server.add_repo("org/noconfig", no_config.path)
        server.add_repo("org/gated", tiny.path, gated=True)
        server.add_repo("org/single", single.path)
        server.add_token(TOKEN)
        yield server


def _resolve(tmp_path: Path, endpoint: str, model: str, **env: str):
    return resolve(settings(AIM_MODEL_ID=model, AIM_CACHE_PATH=str(tmp_path / "cache"), HF_ENDPOINT=endpoint,
                            **env), EMPTY)


def test_unreachable_hub_is_named_as_such_after_a_few_quick_tries(tmp_path, calls):
    with socket.socket() as s:     # a port that was just free: connecting is refused
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(AimError) as err:
        _resolve(tmp_path, endpoint, "org/not-in-catalog")
    assert f"cannot reach the Hugging Face hub at {endpoint}" in err.value.message
    assert "ConnectError" in err.value.message
    assert "AIM_OFFLINE" in err.value.hint and "HF_ENDPOINT" in err.value.hint
    assert "no config.json" not in str(err.value)
    assert calls == {"head": model_source.PROBE_RETRY["attempts"], "download": 0}   # no long library retries


@pytest.mark.parametrize("model, env, fault, words", [
    ("org/noconfig", {}, None, ["org/noconfig has no config.json", "not a transformers checkpoint"]),
    ("org/nope", {}, None, ["model 'org/nope' was not found on", "HF_TOKEN is not set"]),
    ("org/gated", {}, None, ["org/gated is a gated model", "HF_TOKEN is not set"]),
    ("org/gated", {"HF_TOKEN": TOKEN}, None, ["org/gated is a gated model", "the account of HF_TOKEN has no access"]),
    ("org/tiny", {"HF_TOKEN": "hf_" + "z" * 30}, None, ["rejected HF_TOKEN", "HTTP 401"]),
    ("org/tiny", {}, Fault(path="*/config.json", method="HEAD", status=403), ["refused access", "HTTP 403"]),
    ("org/tiny", {}, Fault(path="*/config.json", method="HEAD", status=404), ["HTTP 404", "AIM_MODEL_REVISION"]),
    ("org/tiny", {}, Fault(path="*/config.json", method="HEAD", status=503), ["HTTP 503", "after retries"]),
])
def test_each_hub_answer_gets_its_own_message(tmp_path, hub, calls, model, env, fault, words):
    hub.reset_stats()
    if fault is not None:
        hub.add_fault(fault)
    try:
        with pytest.raises(AimError) as err:
            _resolve(tmp_path, hub.url, model, **env)
    finally:
        hub.clear_faults()
    text = str(err.value)
    for word in words:
        assert word in text, text
    assert "cannot reach" not in text
    assert "q" * 30 not in text and "z" * 30 not in text
    retried = fault is not None and fault.status == 503
    assert calls["head"] == (model_source.PROBE_RETRY["attempts"] if retried else 1)
    assert calls["download"] == 0


def test_a_reachable_hub_gives_the_model_and_its_weights_size(tmp_path, hub, calls):
    source = _resolve(tmp_path, hub.url, "org/tiny")
    assert source.kind == "hub" and source.model.hidden_size == 64 and source.model.weights_bytes == 2 * 64_000
    hub.reset_stats()
    single = _resolve(tmp_path, hub.url, "org/single")     # no index: the size comes from paths-info
    assert single.model.weights_bytes == SIZES["org/single"]
    assert hub.stats()["paths"]["/api/models/org/single/paths-info/main"]["POST"] == 1
