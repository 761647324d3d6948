"""ROCm's device-visibility variables, applied the way the ROCm runtimes apply them.

- `ROCR_VISIBLE_DEVICES` is applied first, by the ROCr runtime, to every GPU the process can
  open (KFD enumeration order). Entries are indices or UUIDs (`GPU-<16 hex digits>`); the listed
  order becomes the new order. Set but empty: no GPU at all.
- `HIP_VISIBLE_DEVICES` (or, when it is unset, `CUDA_VISIBLE_DEVICES`, its alias on ROCm) is
  applied next, by HIP, and indexes into the ROCR-visible list. Empty means unset.
- In every list, the first invalid entry (out of range, unknown UUID, a repeat, `-1`, garbage)
  ends the list: it and everything after it are ignored, as the runtimes do.

vLLM refuses to start when HIP_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES are both set and differ,
so that case is reported as a warning (the agent itself follows HIP, as the HIP runtime does).

These are not AIM_* settings: callers pass the environment mapping in, so this stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

ROCR = "ROCR_VISIBLE_DEVICES"
HIP = "HIP_VISIBLE_DEVICES"
CUDA = "CUDA_VISIBLE_DEVICES"
VARIABLES = (ROCR, HIP, CUDA)


@dataclass
class Visible:
    """The outcome: `rocr` are positions (into the probe's list) that ROCR leaves visible, in
    ROCR order; `final` are positions into `rocr` that HIP/CUDA leave visible, in HIP order."""

    rocr: list[int]
    final: list[int]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def selected(self) -> list[tuple[int, int]]:
        """(probe position, ROCR-relative index) for each device the engine will see, in order."""
        return [(self.rocr[i], i) for i in self.final]


def _select(name: str, value: str, uuids: Sequence[str | None], warnings: list[str]) -> list[int]:
    """Positions into `uuids` selected by one variable's value; stops at the first bad entry."""
    chosen: list[int] = []
    lowered = [u.lower() if u else None for u in uuids]
    entries = [e.strip() for e in value.split(",")]
    for n, entry in enumerate(entries):
        position: int | None = None
        problem = ""
        if entry.isdigit():
            position = int(entry)
            if position >= len(uuids):
                problem = f"index {position} is out of range ({len(uuids)} device(s) to choose from)"
                position = None
        elif entry.lower().startswith("gpu-"):
            matches = [i for i, u in enumerate(lowered) if u == entry.lower()]
            if matches:
                position = matches[0]
            else:
                problem = f"no device has UUID {entry}"
        elif entry == "-1" and n == 0:
            return []  # the conventional "hide every GPU"
        else:
            problem = f"{entry!r} is neither an index nor a GPU-<hex> UUID"
        if position is not None and position in chosen:
            problem, position = f"device {entry} is listed twice", None
        if position is None:
            ignored = ",".join(entries[n:])
            warnings.append(f"{name}={value!r}: {problem}; ignoring {ignored!r} and what follows, as ROCm does")
            break
        chosen.append(position)
    return chosen


def conflict(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(HIP value, CUDA value) when both are set and name different lists (vLLM then refuses to
    start; HIP follows its own), else None. White space does not count."""
    hip = (environ.get(HIP) or "").strip()
    cuda = (environ.get(CUDA) or "").strip()
    if hip and cuda and hip.replace(" ", "") != cuda.replace(" ", ""):
        return hip, cuda
    return None


def apply(uuids: Sequence[str | None], environ: Mapping[str, str]) -> Visible:
    """Apply the visibility variables to devices whose UUIDs (or None) are `uuids`, in order."""
    warnings: list[str] = []
    notes: list[str] = []
    rocr_value = environ.get(ROCR)
    if rocr_value is None:
        rocr = list(range(len(uuids)))
    elif rocr_value.strip() == "":
        rocr = []
        notes.append(f"{ROCR} is set but empty: ROCm shows no GPU")
    else:
        rocr = _select(ROCR, rocr_value, uuids, warnings)
        notes.append(f"{ROCR}={rocr_value} leaves {len(rocr)} of {len(uuids)} GPU(s)")

    hip_value = (environ.get(HIP) or "").strip()
    cuda_value = (environ.get(CUDA) or "").strip()
    if conflict(environ):
        warnings.append(
            f"{HIP}={hip_value!r} and {CUDA}={cuda_value!r} differ: vLLM refuses to start when both are set "
            f"and disagree; set one of them, or both to the same value (the agent follows {HIP}, as HIP does)"
        )
    name, value = (HIP, hip_value) if hip_value else (CUDA, cuda_value)
    if value:
        final = _select(name, value, [uuids[p] for p in rocr], warnings)
        notes.append(f"{name}={value} leaves {len(final)} of {len(rocr)} GPU(s)")
    else:
        final = list(range(len(rocr)))
    return Visible(rocr, final, warnings, notes)
