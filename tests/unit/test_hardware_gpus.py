"""The GPU spec table (gpus.yaml) and its lookups."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aim_engine.errors import AimError
from aim_engine.hardware import gpus

GIB = 1024**3
ISSUE_MODELS = ("MI210", "MI250", "MI250X", "MI300A", "MI300X", "MI308X", "MI325X", "MI350X", "MI355X")


def test_every_model_of_the_issue_is_in_the_table():
    assert set(ISSUE_MODELS) <= set(gpus.names())


def test_table_loads_from_the_yaml_file_with_the_same_content():
    raw = yaml.safe_load(gpus.TABLE_PATH.read_text())
    for name, entry in raw["gpus"].items():
        spec = gpus.spec(name)
        assert spec.memory_bytes == entry["memory_gib"] * GIB
        assert spec.compute_units == entry["compute_units"]
        assert spec.gfx == entry["gfx"]
        assert spec.gfx_target_version == raw["gfx"][entry["gfx"]]["gfx_target_version"]
        assert gpus.gfx_name(spec.gfx_target_version) == spec.gfx


def test_specs_are_frozen_and_cached():
    spec = gpus.spec("MI300X")
    with pytest.raises(AttributeError):
        spec.memory_bytes = 1  # type: ignore[misc]
    assert gpus.spec("MI300X") is spec
    assert gpus.all_specs() is not None and gpus.all_specs()[0] is gpus.spec(gpus.names()[0])


@pytest.mark.parametrize("name", ["mi300x", "MI300X", " Mi300X ", "AMD Instinct MI300X", "instinct mi300x"])
def test_spec_names_are_case_insensitive(name):
    assert gpus.spec(name).name == "MI300X"


def test_unknown_model_error_lists_the_allowed_names():
    with pytest.raises(AimError) as err:
        gpus.spec("H100")
    assert "'H100'" in str(err.value)
    for name in ISSUE_MODELS:
        assert name in err.value.hint
    assert gpus.find("H100") is None


@pytest.mark.parametrize(
    "device_id, model",
    [
        ("0x74a1", "MI300X"), ("0x74a9", "MI300X"), ("0x74bd", "MI300X"), ("0x74b5", "MI300X"),  # PF, HF, VF
        ("0x74a5", "MI325X"), ("0x74b9", "MI325X"), ("0x74a0", "MI300A"), ("0x74a2", "MI308X"),
        ("0x740f", "MI210"), ("0x7410", "MI210"), ("0x7408", "MI250X"),
        ("0x75a0", "MI350X"), ("0x75b0", "MI350X"), ("0x75a3", "MI355X"), ("0x75b3", "MI355X"),
    ],
)
def test_device_ids_including_variants_and_virtual_functions(device_id, model):
    assert gpus.by_device_id(device_id).name == model


@pytest.mark.parametrize("form", ["0x74A1", "74a1", 0x74A1, "29857"])
def test_device_id_forms(form):
    assert gpus.by_device_id(form).name == "MI300X"


def test_unknown_or_garbage_device_ids_give_none():
    assert gpus.by_device_id("0x744c") is None  # a Radeon RX 7900
    assert gpus.by_device_id("not-an-id") is None
    assert gpus.by_device_id(0x1_0000) is None


def test_vf_ids_are_a_subset_of_device_ids():
    for spec in gpus.all_specs():
        assert set(spec.vf_device_ids) <= set(spec.device_ids)


def test_shared_mi250_id_is_told_apart_by_compute_units():
    assert gpus.by_device_id("0x740c").name == "MI250"
    assert gpus.by_device_id("0x740c", compute_units=104).name == "MI250"
    assert gpus.by_device_id("0x740c", compute_units=110).name == "MI250X"
    assert "0x740c" in gpus.spec("MI250X").all_device_ids


def test_mi250_cards_are_two_64_gib_devices():
    for name in ("MI250", "MI250X"):
        spec = gpus.spec(name)
        assert spec.devices_per_card == 2
        assert spec.memory_bytes == 64 * GIB


@pytest.mark.parametrize("version, name", [(90010, "gfx90a"), (90402, "gfx942"), (90500, "gfx950"),
                                           (110000, "gfx1100"), (120001, "gfx1201"), (90008, "gfx908")])
def test_gfx_name(version, name):
    assert gpus.gfx_name(version) == name


@given(major=st.integers(8, 12), minor=st.integers(0, 15), stepping=st.integers(0, 15))
def test_gfx_name_encodes_minor_and_stepping_in_hex(major, minor, stepping):
    name = gpus.gfx_name(major * 10000 + minor * 100 + stepping)
    assert name == f"gfx{major}{minor:x}{stepping:x}"


def test_fp8_flavour_follows_the_gfx():
    assert gpus.fp8_format("gfx942") == "e4m3fnuz"
    assert gpus.fp8_format("gfx950") == "e4m3fn"
    assert gpus.fp8_format("gfx90a") is None
    assert gpus.spec("MI355X").fp8_format == "e4m3fn"
    assert gpus.spec("MI300X").supports("fp8") and not gpus.spec("MI250").supports("fp8")


def test_precisions_per_gfx_and_generic_fallback():
    assert "fp8" not in gpus.gfx_precisions("gfx90a")
    assert "fp8" in gpus.gfx_precisions("gfx942")
    assert gpus.gfx_precisions("gfx1100") == gpus.capabilities("generic").precisions == ("fp16", "bf16")
