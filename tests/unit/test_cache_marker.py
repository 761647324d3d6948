"""Completeness marker, layout and retry policy (real files, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aim_engine.cache import marker as markers
from aim_engine.cache.download import RetryPolicy, with_retries
from aim_engine.cache.layout import Layout, is_local_model, repo_folder, repo_id_from_folder
from aim_engine.cache.progress import Tracker


class Log:
    def __init__(self):
        self.events = []

    def info(self, event, **kw):
        self.events.append((event, kw))

    warning = debug = info


def make_snapshot(tmp_path: Path, files: dict[str, bytes]) -> tuple[Layout, markers.Marker]:
    layout = Layout(tmp_path, tmp_path / "huggingface" / "hub")
    snap = layout.snapshot("org/m", "c" * 40)
    for name, data in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(data)
    m = markers.Marker("org/m", "refs/pr/1", "c" * 40,
                       tuple(markers.MarkedFile(n, len(d), markers.sha256_of(snap / n)) for n, d in files.items()))
    markers.write(layout, m)
    return layout, m


def test_marker_round_trip_and_quick_check(tmp_path):
    layout, m = make_snapshot(tmp_path, {"config.json": b"{}", "w/x.safetensors": b"x" * 100})
    assert layout.marker("org/m", "refs/pr/1").name == "refs%2Fpr%2F1.json"
    found, why = markers.quick_check(layout, "org/m", "refs/pr/1")
    assert found == m and why == ""
    assert not list(layout.markers_dir("org/m").glob("*.tmp"))


def test_truncated_missing_or_garbled_marker_is_not_complete(tmp_path):
    layout, m = make_snapshot(tmp_path, {"a.json": b"{}", "b.bin": b"y" * 10})
    snap = layout.snapshot("org/m", m.commit)
    (snap / "b.bin").write_bytes(b"y" * 9)
    found, why = markers.quick_check(layout, "org/m", "refs/pr/1")
    assert found is None and "b.bin has 9 bytes, expected 10" in why
    (snap / "b.bin").unlink()
    assert "b.bin is missing" in markers.quick_check(layout, "org/m", "refs/pr/1")[1]
    layout.marker("org/m", "refs/pr/1").write_text('{"format": 1, "repo')
    found, why = markers.quick_check(layout, "org/m", "refs/pr/1")
    assert found is None and "refs%2Fpr%2F1.json is damaged: it is not valid JSON" in why
    assert markers.quick_check(layout, "org/m", "main") == (None, "it was never completely downloaded")


def test_content_problem_sees_same_size_corruption_only_when_full(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"hello world")
    sha, blob = markers.sha256_of(p), markers.git_blob_sha1_of(p)
    assert markers.content_problem(p, 11, sha, None, full=True) is None
    assert markers.content_problem(p, 11, None, blob, full=True) is None
    p.write_bytes(b"hello there")
    assert markers.content_problem(p, 11, sha, None, full=False) is None
    assert markers.content_problem(p, 11, sha, None, full=True) == "sha256 does not match"
    assert markers.content_problem(p, 11, None, blob, full=True) == "git blob id does not match"


def test_layout_names(tmp_path, monkeypatch):
    assert repo_folder("Qwen/Qwen3-8B") == "models--Qwen--Qwen3-8B"
    assert repo_id_from_folder("models--Qwen--Qwen3-8B") == "Qwen/Qwen3-8B"
    assert is_local_model("/mnt/models") and is_local_model("./m") and not is_local_model("org/name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert is_local_model("org/name")


def test_with_retries_honours_retry_after_and_gives_up():
    import httpx2

    from huggingface_hub.errors import HfHubHTTPError

    def error(status, headers=None):
        request = httpx2.Request("GET", "http://x/api/models/a/b")
        return HfHubHTTPError("boom", response=httpx2.Response(status, headers=headers or {}, request=request))

    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise error(429, {"Retry-After": "7"}) if len(calls) == 1 else httpx2.ConnectError("down")
        return "ok"

    policy = RetryPolicy(attempts=4, base=0.5, max_wait=1.0)
    assert with_retries(flaky, policy, "x", Log(), sleep=sleeps.append) == "ok"
    assert sleeps == [7.0, 1.0]          # backoff still doubles behind a Retry-After
    with pytest.raises(HfHubHTTPError):
        with_retries(lambda: (_ for _ in ()).throw(error(404)), policy, "x", Log(), sleep=sleeps.append)
    assert len(sleeps) == 2                     # a 404 is not retried
    with pytest.raises(HfHubHTTPError):
        with_retries(lambda: (_ for _ in ()).throw(error(503)), policy, "x", Log(), sleep=sleeps.append)
    assert sleeps[2:] == [0.5, 1.0, 1.0]        # bounded: 4 attempts, capped backoff


def test_tracker_counts_and_uncounts():
    seen = []
    t = Tracker("m", [seen.append], Log(), log_every=1000)
    t.set_phase("downloading", bytes_total=100, files_total=2)
    counted = [0]
    bar = t.tqdm_class(counted)(total=60)
    bar.update(60)
    t.add(-counted[0])                 # a failed attempt's bytes do not count
    bar.update(60)
    t.file_done()
    assert t.snapshot().bytes_done == 60 and seen[-1].files_done == 1
