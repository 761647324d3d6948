"""`aim-engine detect [--json]`: show the GPUs (or the CPU) the agent would use, and why, and
the engines installed here (engines/inventory.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from aim_engine.text_table import align

GIB = 1024**3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the detection result as JSON (Hardware.to_dict())")


def render_engines(engines, out: TextIO) -> None:
    """One line per engine: version and where it runs from, or that it is not installed here."""
    from aim_engine.engines.inventory import PROBES, where

    title = "engines" + (f" (image flavour {engines.flavour})" if engines.flavour else "") + ":"
    print(title, file=out)
    rows = []
    for probe in PROBES:
        found = engines.get(probe.engine)
        if found is None:
            rows.append([probe.engine, "-", "not installed " + where(engines)])
        else:
            rows.append([probe.engine, found.version or "version unknown",
                         found.executable + (f" (python {found.interpreter})" if found.interpreter
                                             and found.interpreter != found.executable else "")])
    for line in align(rows):
        print("  " + line.rstrip(), file=out)


def render(hardware, out: TextIO) -> None:
    """The human form: one line of summary, one row per GPU, the CPU, then notes and warnings."""
    cpu = hardware.cpu
    if hardware.devices:
        d0 = hardware.devices[0]
        print(f"{hardware.gpu_count}× {hardware.gpu_model} ({d0.gfx}), "
              f"{hardware.memory_per_gpu_bytes / GIB:.1f} GiB per GPU — source: {hardware.source}", file=out)
        rows = [["GPU", "model", "gfx", "memory", "partition", "device id", "render node", "UUID", "PCI bus"]]
        for d in hardware.devices:
            partition = "/".join(p for p in (d.compute_partition, d.memory_partition) if p) or "-"
            rows.append([str(d.index), d.model + ("" if d.known else " (unknown)"), d.gfx,
                         f"{d.memory_bytes / GIB:.1f} GiB", partition, d.device_id or "-",
                         d.render_node or "-", d.uuid or "-", d.pci_bus or "-"])
        for line in align(rows):
            print("  " + line, file=out)
        restrict = hardware.hip_visible_devices()
        if restrict:
            print(f"  engine will run with HIP_VISIBLE_DEVICES=CUDA_VISIBLE_DEVICES={restrict}", file=out)
    else:
        print(f"no GPU — target: CPU (vLLM CPU backend) — source: {hardware.source}", file=out)
    print(f"CPU: {cpu.model}, {cpu.cores} core(s), {cpu.memory_bytes / GIB:.1f} GiB", file=out)
    for title, lines in (("notes", hardware.notes), ("warnings", hardware.warnings)):
        if lines:
            print(f"{title}:", file=out)
            for line in lines:
                print(f"  - {line}", file=out)


def run(args: argparse.Namespace) -> int:
    from aim_engine.hardware import detect
    from aim_engine.logs import configure_from
    from aim_engine.settings import Settings

    settings = Settings.from_env()
    configure_from(settings)  # logs go to stderr; stdout carries only the result
    from aim_engine.engines import inventory

    hardware = detect(settings)
    engines = inventory.scan(flavour=settings.image_flavour)
    if args.json:
        json.dump({**hardware.to_dict(), "engines": engines.to_dict()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(hardware, sys.stdout)
        render_engines(engines, sys.stdout)
    return 0
