"""`aim-engine cache` (not implemented yet)."""

from __future__ import annotations

import argparse

from aim_engine.errors import AimError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise AimError("`aim-engine cache` is not implemented yet")
