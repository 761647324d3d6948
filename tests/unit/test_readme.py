"""The README documents every setting and every subcommand the code has."""

from __future__ import annotations

import argparse
from pathlib import Path

from aim_engine.cli import COMMANDS, build_parser
from aim_engine.settings import VARIABLES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_variable_is_in_the_settings_table():
    missing = [v.name for v in VARIABLES if f"| `{v.name}` |" not in README]
    assert missing == []


def test_every_subcommand_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = []
    for name, command_parser in sub.choices.items():
        nested = [a for a in command_parser._actions if isinstance(a, argparse._SubParsersAction)]
        names += [f"aim-engine {name} {child}" for a in nested for child in a.choices] or [f"aim-engine {name}"]
    assert set(sub.choices) == set(COMMANDS)
    missing = [n for n in names if f"`{n}" not in README]
    assert missing == []


def test_the_two_commands_are_there():
    assert "make run" in README and "make test" in README


def test_every_make_target_is_documented():
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    phony = makefile.split(".PHONY:", 1)[1].split("\n\n", 1)[0].replace("\\", " ").split()
    missing = [t for t in phony if f"make {t}" not in README]
    assert phony and missing == []
