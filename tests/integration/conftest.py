"""Fixtures shared by the agent tests that run real `aim-engine serve` processes with the stand-in
engine (tests/e2e/harness.py): single-node serve and multi-node groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Agent, fake_engine_dir


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    return fake_engine_dir(tmp_path / "bin")


@pytest.fixture
def agents():
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.kill_tree()
