"""Properties of the cache commands over hostile cache content (issue 12, "keep it fixed").

Each example plants arbitrary content in a real cache tree (a marker as arbitrary JSON or as a
marker with hostile values, ref bytes, file and folder names, symlinks aimed out of the cache),
then runs the real code in-process: `aim-engine cache list`, `list --json`, `verify`, `verify
--full --repair`, the boot's warm-up (`cache.warm` with AIM_OFFLINE=1, so a cold cache is a clear
error and no network is touched) and `cache remove`. Invariants, for every input:

- every command ends with exit code 0, 1 or 2, or an AimError (the CLI's clean error): never
  another exception (which would be a traceback);
- not one file changes in the canary tree next to the cache, which the hostile values aim at;
- every command returns within a bound (an alarm): a FIFO or /dev/zero never hangs a reader.

The number of examples and the fixed seed come from the hypothesis profile in tests/conftest.py
(`ci` under `make test`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aim_engine import cache as cache_api
from aim_engine.cli import main as cli_main
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.support.cache_tree import REPO, Canary, build
from tests.support.hang_guard import bounded

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUND_S = 20   # per command: a hang guard, not a timing assertion
COMMANDS = (["cache", "list"], ["cache", "list", "--json"], ["cache", "verify"], ["cache", "verify", "--full", "--repair"])

CANARY_PATHS = ["../../../../../../canary/x", "../../../../../canary", "/tmp", "/", "..", ".", "",
                "../" * 12 + "etc", "canary/../../x", "a/../../b", "x\x00y", "a" * 300, "é" * 200, "\ud800",
                "sub//x", "./x", "f" * 64, "/dev/zero"]
names = st.one_of(st.sampled_from(CANARY_PATHS), st.text(max_size=40),
                  st.text(string.ascii_letters + "./-_", max_size=30))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(allow_nan=True),
                         names)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=15)
file_entries = st.fixed_dictionaries(
    {"path": st.one_of(names, st.sampled_from(["config.json", "tokenizer.json", "model.safetensors"])),
     "size": st.one_of(st.integers(-5, 5000), st.sampled_from([0, 39, 4096, 2**60]), json_scalars)},
    optional={"sha256": st.one_of(names, st.text("0123456789abcdef", min_size=64, max_size=64)),
              "blob_id": st.one_of(names, st.text("0123456789abcdef", min_size=40, max_size=40))})
hostile_markers = st.fixed_dictionaries(
    {"format": st.one_of(st.just(1), json_scalars), "repo_id": st.one_of(st.just(REPO), names),
     "revision": st.one_of(st.just("main"), names),
     "commit": st.one_of(st.just("c0ffee" + "0" * 34), names),
     "files": st.one_of(st.lists(file_entries, max_size=4), json_values)},
    optional={"verified": json_scalars, "created": json_scalars})
marker_text = st.one_of(hostile_markers.map(json.dumps), json_values.map(json.dumps),
                        st.binary(max_size=200).map(lambda b: b.decode("latin-1")))

# What else an attacker or a damaged disk leaves: (where, what).
PLANTS = ["snapshot->canary", "blobs->canary", "repo->canary", "locks->canary", "locks-file", "snapshots-file",
          "marker-fifo", "marker->dev-zero", "ref->canary", "lock->canary-new", "holder-garbage",
          "markers-folder->canary", "extra-model-folder", "extra-marker-name"]


@contextlib.contextmanager
def environment(values: dict[str, str]):
    saved = {k: v for k, v in os.environ.items() if k.startswith(("AIM_", "HF_"))}
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k in list(os.environ):
            if k.startswith(("AIM_", "HF_")):
                del os.environ[k]
        os.environ.update(saved)


def run_everything(top: Path) -> list[str]:
    """Every cache command over the planted tree; returns their outputs (for failure messages)."""
    outputs = []
    env = {"AIM_CACHE_PATH": str(top / "cache"), "AIM_LOG_LEVEL": "error", "AIM_LOCK_TIMEOUT": "0",
           "HF_ENDPOINT": "http://127.0.0.1:9", "AIM_OFFLINE": "1"}
    with environment(env):
        for argv in [*COMMANDS, "warm", ["cache", "remove", REPO]]:
            out, err = io.StringIO(), io.StringIO()
            with bounded(str(argv), BOUND_S), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if argv == "warm":
                    try:
                        cache_api.warm(REPO, Settings.from_env())
                        code = 0
                    except AimError as exc:
                        code = exc.exit_code
                else:
                    code = cli_main(argv)
            assert code in (0, 1, 2), (argv, code, out.getvalue(), err.getvalue())
            outputs.append(f"{argv}: {code}\n{out.getvalue()}{err.getvalue()}")
    return outputs


def plant(c, top: Path, what: str, text: str) -> None:
    canary = top / "canary"
    locks = c.root / "aim" / "locks"
    if what == "snapshot->canary":
        shutil.rmtree(c.snapshot)
        c.snapshot.symlink_to(canary)
    elif what == "blobs->canary":
        shutil.rmtree(c.repo_dir / "blobs")
        (c.repo_dir / "blobs").symlink_to(canary)
    elif what == "repo->canary":
        shutil.rmtree(c.repo_dir)
        c.repo_dir.symlink_to(canary)
    elif what == "locks->canary":
        locks.symlink_to(canary)
    elif what == "locks-file":
        locks.write_text(text)
    elif what == "snapshots-file":
        shutil.rmtree(c.repo_dir / "snapshots")
        (c.repo_dir / "snapshots").write_text(text)
    elif what == "marker-fifo":
        c.marker.unlink()
        os.mkfifo(c.marker)
    elif what == "marker->dev-zero":
        c.marker.unlink()
        c.marker.symlink_to("/dev/zero")
    elif what == "ref->canary":
        (c.repo_dir / "refs" / "main").unlink()
        (c.repo_dir / "refs" / "main").symlink_to(canary / "main")
    elif what == "lock->canary-new":
        locks.mkdir(parents=True)
        (locks / "models--org--tiny.lock").symlink_to(canary / "new")
    elif what == "holder-garbage":
        locks.mkdir(parents=True)
        (locks / "models--org--tiny.holder.json").write_text(text)
    elif what == "markers-folder->canary":
        shutil.rmtree(c.marker.parent)
        c.marker.parent.symlink_to(canary)
    elif what == "extra-model-folder":
        safe = text.replace("/", "_").replace("\x00", "_")[:200] or "x"
        (c.root / "huggingface" / "hub" / f"models--{safe}").mkdir(exist_ok=True)
    elif what == "extra-marker-name":
        safe = text.replace("/", "_").replace("\x00", "_")[:200] or "x"
        # A copy of the marker, unless an earlier plant made it a FIFO or a link to /dev/zero.
        plain = c.marker.is_file() and not c.marker.is_symlink()
        (c.marker.parent / f"{safe}.json").write_text(c.marker.read_text() if plain else "{}")


def check(build_and_plant) -> None:
    top = Path(tempfile.mkdtemp(prefix="aim-cache-prop-"))
    try:
        c = build(top / "cache")
        canary = Canary(top / "canary")
        build_and_plant(c, top)
        canary.before = canary.snapshot()   # what the attacker planted is the baseline: the agent may change nothing
        outputs = run_everything(top)
        assert canary.changes() == {}, "\n".join(outputs)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@SETTINGS
@given(text=marker_text)
def test_any_marker_content(text):
    check(lambda c, top: c.marker.write_text(text, encoding="utf-8", errors="surrogatepass"))


@SETTINGS
@given(data=st.binary(max_size=300), with_marker=st.booleans())
def test_any_ref_bytes(data, with_marker):
    def planting(c, top):
        (c.repo_dir / "refs" / "main").write_bytes(data)
        if not with_marker:
            c.marker.unlink()
    check(planting)


@SETTINGS
@given(what=st.lists(st.sampled_from(PLANTS), min_size=1, max_size=3, unique=True), text=st.text(max_size=60),
       marker=st.one_of(st.none(), hostile_markers.map(json.dumps)))
def test_planted_files_links_and_names(what, text, marker):
    def planting(c, top):
        if marker is not None:
            c.marker.write_text(marker, encoding="utf-8", errors="surrogatepass")
        for item in what:
            try:
                plant(c, top, item, text)
            except OSError:
                pass   # an earlier plant already replaced that part
    check(planting)
