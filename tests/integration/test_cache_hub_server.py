"""The shared test hub (tests/support/hf_server.py) behaves like the hub for huggingface_hub."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.parse

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

from tests.support.hf_server import Fault, HubServer
from tests.support.tiny_repo import make_repo


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("repo"), shards=2, shard_bytes=20_000)
    with HubServer() as hub:
        sha = hub.add_repo("org/tiny", repo.path)
        hub.add_repo("org/gated", repo.path, gated=True)
        hub.add_token("hf_granted_aaaaaaaaaaaaaaaaaaaa", grant=["org/gated"])
        yield hub, repo, sha


def test_model_info_tree_and_pagination(served):
    hub, repo, sha = served
    api = HfApi(endpoint=hub.url, token=False)
    info = api.model_info("org/tiny", files_metadata=True)
    assert info.sha == sha and info.safetensors.total > 0 and info.config["model_type"] == "llama"
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes[repo.shards[0]] == (repo.path / repo.shards[0]).stat().st_size
    assert next(s for s in info.siblings if s.rfilename == repo.shards[0]).lfs.sha256
    r = httpx2.get(f"{hub.url}/api/models/org/tiny/tree/main", params={"recursive": "true", "page_size": 3})
    assert r.status_code == 200 and len(r.json()) == 3 and 'rel="next"' in r.headers["Link"]
    files = sorted(api.list_repo_files("org/tiny"))
    assert files == sorted(p.relative_to(repo.path).as_posix() for p in repo.path.rglob("*") if p.is_file())


def test_resolve_headers_and_ranges(served):
    hub, repo, sha = served
    url = f"{hub.url}/org/tiny/resolve/main/{repo.shards[0]}"
    head = httpx2.head(url)
    assert head.headers["X-Repo-Commit"] == sha and head.headers["X-Linked-Etag"].strip('"')
    part = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == (repo.path / repo.shards[0]).read_bytes()[10:20]


def test_errors_like_the_hub(served, tmp_path):
    hub, repo, sha = served
    kwargs = dict(cache_dir=tmp_path, endpoint=hub.url)
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "config.json", token=False, **kwargs)
    assert hf_hub_download("org/gated", "config.json", token="hf_granted_aaaaaaaaaaaaaaaaaaaa", **kwargs)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/nope", "config.json", token=False, **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/tiny", "config.json", revision="nope", token=False, **kwargs)
    r = httpx2.get(f"{hub.url}/org/tiny/resolve/main/missing.txt")
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"


def test_faults_and_counting(served):
    hub, repo, sha = served
    hub.reset_stats()
    hub.add_fault(Fault(path="*/config.json", status=429, retry_after=3, times=1))
    first = httpx2.get(f"{hub.url}/org/tiny/resolve/main/config.json")
    second = httpx2.get(f"{hub.url}/org/tiny/resolve/main/config.json")
    assert (first.status_code, first.headers["Retry-After"], second.status_code) == (429, "3", 200)
    assert hub.file_requests("org/tiny", "config.json") == 2
    assert hub.file_bytes("org/tiny", "config.json") == len(second.content)
    hub.add_fault(Fault(path=f"*/{repo.shards[1]}", drop_after=100, times=1))
    with pytest.raises(httpx2.RemoteProtocolError):
        httpx2.get(f"{hub.url}/org/tiny/resolve/main/{repo.shards[1]}")


def test_spawned_server_is_driven_through_control_endpoints(tmp_path):
    repo = make_repo(tmp_path / "r", shards=1, shard_bytes=1000, decoys=False)
    with HubServer.spawn(repos={"org/s": repo.path}) as proc:
        assert httpx2.get(f"{proc.url}/org/s/resolve/main/config.json").status_code == 200
        proc.client.add_fault(Fault(path="*", status=500, times=1))
        assert httpx2.get(f"{proc.url}/api/models/org/s").status_code == 500
        stats = proc.client.stats()
        assert stats["requests"] == 2 and proc.client.file_bytes("org/s", "config.json") > 0
        proc.client.reset_stats()
        assert proc.client.stats()["requests"] == 0


def test_paths_info_like_the_hub(served):
    hub, repo, sha = served
    api = HfApi(endpoint=hub.url, token=False)
    shard = repo.shards[0]
    infos = api.get_paths_info("org/tiny", [shard, "config.json", "original", "no-such-file"], revision="main")
    by_path = {i.path: i for i in infos}
    assert list(by_path) == [shard, "config.json", "original"]      # missing paths are left out
    assert by_path[shard].size == (repo.path / shard).stat().st_size
    assert by_path[shard].lfs.sha256 == hashlib.sha256((repo.path / shard).read_bytes()).hexdigest()
    assert by_path[shard].lfs.size == by_path[shard].size
    config = (repo.path / "config.json").read_bytes()
    assert by_path["config.json"].lfs is None
    assert by_path["config.json"].blob_id == hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    assert type(by_path["original"]).__name__ == "RepoFolder"
    expanded = api.get_paths_info("org/tiny", shard, expand=True, revision=sha)
    assert expanded[0].last_commit.oid == sha and expanded[0].security.safe
    # JSON bodies are accepted too; errors are the hub's.
    r = httpx2.post(f"{hub.url}/api/models/org/tiny/paths-info/main", json={"paths": ["config.json"]})
    assert r.status_code == 200 and [e["path"] for e in r.json()] == ["config.json"]
    with pytest.raises(RevisionNotFoundError):
        api.get_paths_info("org/tiny", ["config.json"], revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.get_paths_info("org/nope", ["config.json"])


def test_request_bodies_are_consumed_so_keep_alive_connections_stay_in_sync(served):
    """A body the route does not use, or one sent to an injected fault, must not be read as the
    next request on the same connection."""
    hub, repo, sha = served
    host, port = hub.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        body = urllib.parse.urlencode({"paths": ["config.json"], "expand": "False"}, doseq=True)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/api/models/org/tiny", body=body, headers=form)   # 405, body unused
        first = conn.getresponse()
        first.read()
        hub.add_fault(Fault(path="*/paths-info/*", status=503, times=1))
        conn.request("POST", "/api/models/org/tiny/paths-info/main", body=body, headers=form)
        second = conn.getresponse()
        second.read()
        conn.request("POST", "/api/models/org/tiny/paths-info/main", body=body, headers=form)
        third = conn.getresponse()
        entries = json.loads(third.read())
        conn.request("GET", "/org/tiny/resolve/main/config.json")
        fourth = conn.getresponse()
        content = fourth.read()
    finally:
        conn.close()
        hub.clear_faults()
    assert (first.status, second.status, third.status, fourth.status) == (405, 503, 200, 200)
    assert [e["path"] for e in entries] == ["config.json"]
    assert content == (repo.path / "config.json").read_bytes()
