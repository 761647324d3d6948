"""Compiled YAML: the build's JSON copy of a shipped document is used only while the file's
text is exactly what was compiled; anything else is parsed from the YAML as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aim_engine import yaml_documents


@pytest.fixture
def package(tmp_path, monkeypatch) -> Path:
    """A stand-in package directory: yaml_documents looks for its compiled index there."""
    root = tmp_path / "aim_engine"
    (root / "tables").mkdir(parents=True)
    monkeypatch.setattr(yaml_documents, "PACKAGE_DIR", str(root))
    monkeypatch.setattr(yaml_documents, "_index", None)
    return root


def _parse_count(monkeypatch) -> list[str]:
    import yaml

    calls: list[str] = []
    real = yaml.load
    monkeypatch.setattr(yaml, "load", lambda text, Loader: calls.append(text) or real(text, Loader=Loader))
    return calls


def test_a_compiled_file_is_read_without_parsing(package, monkeypatch):
    table = package / "tables" / "gpus.yaml"
    table.write_text("gpus:\n  - name: MI300X\n    memory_gib: 192\n", encoding="utf-8")
    assert yaml_documents.compile_tree(package) == 1
    calls = _parse_count(monkeypatch)
    assert yaml_documents.load(table) == {"gpus": [{"name": "MI300X", "memory_gib": 192}]}
    assert calls == []


def test_every_read_gets_its_own_object(package):
    table = package / "t.yaml"
    table.write_text("a: [1]\n", encoding="utf-8")
    yaml_documents.compile_tree(package)
    first = yaml_documents.load(table)
    first["a"].append(2)
    assert yaml_documents.load(table) == {"a": [1]}


def test_an_edited_file_is_parsed_again(package, monkeypatch):
    table = package / "t.yaml"
    table.write_text("a: 1\n", encoding="utf-8")
    yaml_documents.compile_tree(package)
    table.write_text("a: 2\n", encoding="utf-8")
    calls = _parse_count(monkeypatch)
    assert yaml_documents.load(table) == {"a": 2} and len(calls) == 1


@pytest.mark.parametrize("text, expected", [("1: one\n", {1: "one"}),
                                            ("when: 2024-01-01\n", {"when": __import__("datetime").date(2024, 1, 1)}),
                                            ("x: .inf\n", {"x": float("inf")})])
def test_documents_json_cannot_hold_exactly_are_not_compiled(package, monkeypatch, text, expected):
    (package / "t.yaml").write_text(text, encoding="utf-8")
    assert yaml_documents.compile_tree(package) == 0
    calls = _parse_count(monkeypatch)
    assert yaml_documents.load(package / "t.yaml") == expected and len(calls) == 1


def test_invalid_yaml_is_left_to_the_reader(package):
    (package / "bad.yaml").write_text("a: [1\n", encoding="utf-8")
    assert yaml_documents.compile_tree(package) == 0
    import yaml

    with pytest.raises(yaml.YAMLError):
        yaml_documents.load(package / "bad.yaml")


@pytest.mark.parametrize("damage", ["", "not json", "[1, 2]", '{"t.yaml": "x"}', '{"t.yaml": ["0", "{}"]}'])
def test_a_damaged_or_foreign_index_falls_back_to_the_yaml(package, damage):
    (package / "t.yaml").write_text("a: 1\n", encoding="utf-8")
    (package / yaml_documents.COMPILED_NAME).write_text(damage, encoding="utf-8")
    assert yaml_documents.load(package / "t.yaml") == {"a": 1}


def test_files_outside_the_package_are_parsed(package, tmp_path):
    outside = tmp_path / "user-models" / "m.yaml"
    outside.parent.mkdir()
    outside.write_text("id: org/m\n", encoding="utf-8")
    (package / "t.yaml").write_text("a: 1\n", encoding="utf-8")
    yaml_documents.compile_tree(package)
    assert yaml_documents.compiled(outside, outside.read_text()) is yaml_documents.MISSING
    assert yaml_documents.load(outside) == {"id": "org/m"}


def test_the_index_names_files_by_their_path_in_the_package(package):
    (package / "tables" / "a.yaml").write_text("k: v\n", encoding="utf-8")
    (package / "b.yml").write_text("- 1\n", encoding="utf-8")
    yaml_documents.compile_tree(package)
    index = json.loads((package / yaml_documents.COMPILED_NAME).read_text(encoding="utf-8"))
    assert sorted(index) == ["b.yml", "tables/a.yaml"]
    assert json.loads(index["b.yml"][1]) == [1]
