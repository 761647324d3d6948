"""The AMD Instinct GPU spec table (`gpus.yaml`), loaded once into frozen `GpuSpec`s.

GPU facts are data: the planner, the catalog validator and the selector ask this module
("how much memory has an MI300X?", "does gfx90a run fp8?") instead of keeping their own copies.
The YAML is read lazily on first use and cached for the life of the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Union

from aim_engine.errors import AimError

GIB = 1024**3
TABLE_PATH = Path(__file__).with_name("gpus.yaml")

GENERIC = "generic"   # the capability entry for a gfx target the table does not know

DeviceId = Union[int, str]


@dataclass(frozen=True)
class GfxSpec:
    """What one gfx target (ISA) supports, shared by every GPU built on it: the capability table
    (gpus.yaml `gfx:`), the only place the code learns which architecture runs what."""

    gfx: str
    gfx_target_version: int
    precisions: tuple[str, ...]
    fp8_format: str | None
    engines: tuple[str, ...] = ()
    quantization: tuple[str, ...] = ()              # checkpoint quant_method values it loads
    kv_cache_dtypes: tuple[str, ...] = ()           # --kv-cache-dtype values (canonical)
    attention_backends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # engine -> values

    def runs(self, precision: str) -> bool:
        return precision.lower() in self.precisions

    def runs_engine(self, engine: str) -> bool:
        return engine in self.engines

    def loads(self, quant_method: str) -> bool:
        return quant_method.lower() in self.quantization

    def kv_cache_dtype_ok(self, value: str) -> bool:
        return str(value).strip().lower() in self.kv_cache_dtypes


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model. `memory_bytes` and `compute_units` are per *visible device* (one GCD of
    an MI250/MI250X; the whole package of an MI300X in SPX mode)."""

    name: str
    gfx: str
    gfx_target_version: int
    memory_bytes: int
    compute_units: int
    precisions: tuple[str, ...]
    fp8_format: str | None
    device_ids: tuple[str, ...]        # every PCI device id it shows up as (physical, variants, VFs)
    vf_device_ids: tuple[str, ...] = ()  # the SR-IOV virtual-function subset of device_ids
    devices_per_card: int = 1
    xcds: int | None = None            # dies per package = devices per GPU in CPX mode (None: unknown)
    shared_device_ids: tuple[str, ...] = ()  # ids another model uses too (told apart by compute units)

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    @property
    def all_device_ids(self) -> tuple[str, ...]:
        return self.device_ids + self.shared_device_ids

    def supports(self, precision: str) -> bool:
        return precision.lower() in self.precisions


def normalize_device_id(value: DeviceId) -> str:
    """`0x74A1`, `74a1`, `29857` -> `0x74a1` (the form used in the table and in results)."""
    if isinstance(value, bool):
        raise ValueError(f"not a PCI device id: {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().lower()
        try:
            number = int(text, 16) if text.startswith("0x") or not text.isdigit() else int(text, 10)
        except ValueError:
            raise ValueError(f"not a PCI device id: {value!r}") from None
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"not a PCI device id: {value!r}")
    return f"0x{number:04x}"


def gfx_name(gfx_target_version: int) -> str:
    """KFD's `gfx_target_version` -> the LLVM target name: 90010 -> gfx90a, 90402 -> gfx942.

    KFD packs major*10000 + minor*100 + stepping; LLVM writes minor and stepping in hex.
    """
    v = int(gfx_target_version)
    return f"gfx{v // 10000}{(v // 100) % 100:x}{v % 100:x}"


@dataclass(frozen=True)
class _Table:
    gfx: dict[str, GfxSpec]
    gpus: dict[str, GpuSpec]            # upper-case name -> spec, in table order
    by_id: dict[str, tuple[GpuSpec, ...]]  # the owner first, then models sharing the id
    generic: GfxSpec                    # what an unknown gfx target may run
    reported_memory_share: float


def _gfx_entry(name: str, entry: Mapping[str, Any]) -> GfxSpec:
    return GfxSpec(
        gfx=name,
        gfx_target_version=int(entry.get("gfx_target_version") or 0),
        precisions=tuple(entry["precisions"]),
        fp8_format=entry.get("fp8_format"),
        engines=tuple(entry["engines"]),
        quantization=tuple(entry.get("quantization") or ()),
        kv_cache_dtypes=tuple(entry.get("kv_cache_dtypes") or ()),
        attention_backends={engine: tuple(values) for engine, values in (entry.get("attention_backends") or {}).items()},
    )


def _build(raw: dict[str, Any]) -> _Table:
    gfx_table = {name: _gfx_entry(name, entry) for name, entry in raw["gfx"].items()}
    gpus: dict[str, GpuSpec] = {}
    by_id: dict[str, tuple[GpuSpec, ...]] = {}
    shared: list[tuple[str, GpuSpec]] = []
    for name, entry in raw["gpus"].items():
        g = gfx_table[entry["gfx"]]
        vfs = tuple(normalize_device_id(x) for x in entry.get("vf_device_ids", ()))
        ids = tuple(normalize_device_id(x) for x in entry["device_ids"]) + vfs
        spec = GpuSpec(
            name=name,
            gfx=g.gfx,
            gfx_target_version=g.gfx_target_version,
            memory_bytes=int(entry["memory_gib"] * GIB),
            compute_units=int(entry["compute_units"]),
            precisions=g.precisions,
            fp8_format=g.fp8_format,
            device_ids=ids,
            vf_device_ids=vfs,
            devices_per_card=int(entry.get("devices_per_card", 1)),
            xcds=entry.get("xcds"),
            shared_device_ids=tuple(normalize_device_id(x) for x in entry.get("shared_device_ids", ())),
        )
        gpus[name.upper()] = spec
        for device_id in ids:
            if device_id in by_id:
                raise ValueError(f"gpus.yaml: device id {device_id} listed for both {by_id[device_id][0].name} and {name}")
            by_id[device_id] = (spec,)
        shared.extend((device_id, spec) for device_id in spec.shared_device_ids)
    for device_id, spec in shared:
        if device_id not in by_id:
            raise ValueError(f"gpus.yaml: {spec.name} shares device id {device_id}, which no model owns")
        by_id[device_id] += (spec,)
    return _Table(gfx_table, gpus, by_id, _gfx_entry(GENERIC, raw[GENERIC]), float(raw["reported_memory_share"]))


@lru_cache(maxsize=1)
def _table() -> _Table:
    from aim_engine import yaml_documents  # PyYAML loads lazily: importing the package must stay cheap

    return _build(yaml_documents.load(TABLE_PATH))


def all_specs() -> tuple[GpuSpec, ...]:
    """Every GPU in the table, in table order (oldest first)."""
    return tuple(_table().gpus.values())


def names() -> tuple[str, ...]:
    return tuple(s.name for s in all_specs())


def _key(name: str) -> str:
    text = name.strip().upper()
    for prefix in ("AMD ", "INSTINCT "):
        if text.startswith(prefix):
            text = text[len(prefix):].strip()
    return text


def find(name: str | None) -> GpuSpec | None:
    """The spec for a model name ("MI300X", "mi300x", "AMD Instinct MI300X"), or None."""
    if not name:
        return None
    return _table().gpus.get(_key(name))


def spec(name: str) -> GpuSpec:
    """The spec for a model name, case-insensitive; `AimError` listing the known names if unknown."""
    found = find(name)
    if found is None:
        raise AimError(
            f"unknown GPU model {name!r}",
            hint=f"known models: {', '.join(names())}",
        )
    return found


def by_device_id(device_id: DeviceId, compute_units: int | None = None) -> GpuSpec | None:
    """The GPU a PCI device id belongs to (physical, variant or virtual-function id), or None.

    A few ids are shared by two models (0x740c: MI250 and MI250X); `compute_units`, when known,
    picks the one that matches, otherwise the id's owner is returned.
    """
    try:
        key = normalize_device_id(device_id)
    except ValueError:
        return None
    candidates = _table().by_id.get(key, ())
    if compute_units is not None:
        for candidate in candidates:
            if candidate.compute_units == compute_units:
                return candidate
    return candidates[0] if candidates else None


def gfx_spec(gfx: str) -> GfxSpec | None:
    return _table().gfx.get(gfx.strip().lower())


def capabilities(gfx: str | None) -> GfxSpec:
    """What a gfx target supports (precisions, engines, quantization formats, KV-cache dtypes,
    attention backends); the table's `generic` entry for a gfx it does not know."""
    return gfx_spec(gfx or "") or _table().generic


def gfx_precisions(gfx: str) -> tuple[str, ...]:
    """Precisions a gfx target runs natively (the generic entry's for a gfx not in the table)."""
    return capabilities(gfx).precisions


def reported_memory_share() -> float:
    """The share of a GPU's nominal memory a driver may report for it (gpus.yaml
    `reported_memory_share`): the tolerance of the same-family fallback."""
    return _table().reported_memory_share


def covers_memory(nominal_bytes: int, reported_bytes: int) -> bool:
    """True when a device reporting `reported_bytes` has the nominal memory `nominal_bytes`,
    give or take what drivers reserve (an MI355X reports 287.98 of its 288 GiB)."""
    return reported_bytes >= nominal_bytes * reported_memory_share()


def fp8_format(gfx: str) -> str | None:
    """The FP8 flavour of a gfx target: `e4m3fnuz` (gfx942), `e4m3fn` (gfx950), None (no FP8)."""
    g = gfx_spec(gfx)
    return g.fp8_format if g else None


def known_gfx() -> tuple[str, ...]:
    return tuple(_table().gfx)
