"""Reading catalog files: YAML -> JSON Schema -> the dataclasses of `catalog.types`.

The loader is shared by the boot path (`Catalog.load`) and the validator. It turns every
failure it meets (unreadable file, bad YAML, schema violation) into a `Problem` with file, line
and key path instead of raising, so the validator can report everything at once and the boot
path can raise one `AimError` listing it all.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from aim_engine import yaml_documents
from aim_engine.catalog import paths, schema_hints
from aim_engine.catalog.problems import KeyPath, Problem, display_path
from aim_engine.catalog.types import Attention, Model, Moe, Recipe, ServeConfig, Variant, config_shape
from aim_engine.catalog.yaml_lines import LineMap, YamlSyntaxError, line_map, parse, read_text
from aim_engine.errors import AimError

RECIPE, MODEL = "recipe", "model"
YAML_SUFFIXES = (".yaml", ".yml")
SERVE_SECTIONS = {"vllm_serve": "vllm", "sglang_serve": "sglang"}


def yaml_files(directory: Path) -> list[Path]:
    """The catalog files of one directory: every `*.yaml`/`*.yml` entry directly inside it,
    sorted. Subdirectories (templates/, overrides/) are never catalog entries; an entry named
    like a catalog file that is not a regular file (a FIFO, a link to /dev/zero or in a loop, a
    directory called x.yaml) is listed too, so reading it reports it — the same way at boot and
    in `validate` — instead of skipping it silently. (`os.scandir` and a sort by name: half the
    time of `iterdir` + `is_file` + sorting paths, on every boot.)"""
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if os.path.splitext(e.name)[1] in YAML_SUFFIXES)
    except OSError as exc:
        raise AimError(f"cannot list the directory {display_path(directory)}: {exc.strerror or exc}",
                       hint="make it readable and searchable by the agent's user (r-x)") from None
    return [directory / name for name in names]


def directory_problem(directory: Path) -> str | None:
    """Why `directory` cannot be a catalog directory (None: it is a readable directory). One
    wording for the boot (AIM_RECIPES_DIR/AIM_MODELS_DIR) and `validate --recipes-dir`."""
    try:
        info = os.stat(directory)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "is a broken symbolic link" if os.path.islink(directory) else "does not exist"
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.ENOTDIR:
            return "does not exist (a part of the path is a file)"
        return f"cannot be read: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if not os.access(directory, os.R_OK | os.X_OK):
        return "cannot be read: permission denied"
    return None


@dataclass
class Document:
    """One catalog file as read: its data (when parseable), its problems so far, and the
    typed object (`Recipe`/`Model`) when the data passed the schema."""

    kind: str
    path: Path
    text: str | None = None
    data: Any = None
    problems: list[Problem] = field(default_factory=list)
    obj: Any = None                 # the typed Recipe/Model, only when the schema passed
    salvaged: Any = None            # a best-effort Recipe from a document that failed the schema
    _lines: LineMap | None = None
    _display: str | None = None

    @property
    def display(self) -> str:
        """The path as shown in problems (computed once: resolving paths is not free)."""
        if self._display is None:
            self._display = display_path(self.path)
        return self._display

    @property
    def schema_ok(self) -> bool:
        return self.obj is not None

    @property
    def checkable(self) -> Any:
        """What the meaning checks run on: the typed object, else the salvaged one (or None)."""
        return self.obj if self.obj is not None else self.salvaged

    def line(self, path: KeyPath) -> int | None:
        """Line of a key path; the YAML is composed for line info only when first asked."""
        if self.text is None:
            return None
        if self._lines is None:
            self._lines = line_map(self.text)
        return self._lines.line(tuple(path))

    def problem(self, check: str, path: KeyPath, message: str, hint: str) -> Problem:
        return Problem(file=self.display, line=self.line(path), path=tuple(path), message=message,
                       hint=hint, check=check)


# ------------------------------------------------------------------------------------ schema
@lru_cache(maxsize=None)
def _validator(schema_path: Path) -> Any:
    import json

    import jsonschema  # lazily: heavy, and only needed when files are read

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    # Local `#/$defs/...` references are inlined once: resolving a $ref on every descent is
    # a large share of validation time over a thousand documents.
    return cls(_inline_refs(schema, schema.get("$defs", {})))


def _inline_refs(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    if depth > 20:  # a recursive schema: leave the remaining references to jsonschema
        return node
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs and len(node) == 1:
            return _inline_refs(defs[ref[8:]], defs, depth + 1)
        return {k: (v if k == "$defs" else _inline_refs(v, defs, depth)) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs, depth) for v in node]
    return node


def schema_path(kind: str) -> Path:
    return paths.recipe_schema_path() if kind == RECIPE else paths.model_schema_path()


def schema_problems(doc: Document) -> list[Problem]:
    validator = _validator(schema_path(doc.kind))
    problems: list[Problem] = []
    for error in validator.iter_errors(doc.data):
        for key_path, message, hint in schema_hints.explain(error, doc.kind):
            problems.append(doc.problem("schema", key_path, message, hint))
    return problems


# ------------------------------------------------------------------------------- conversion
def default_slug(model_id: str) -> str:
    """The short name recipe ids use for a model: the lower-cased repository name."""
    return model_id.rsplit("/", 1)[-1].lower()


def to_model(data: dict[str, Any], source: Path | None = None) -> Model:
    attention = Attention(**data["attention"])
    moe = Moe(**data["moe"]) if data.get("moe") else None
    variants = tuple(
        Variant(
            huggingface_id=v["huggingface_id"], precision=v["precision"], weights_bytes=v["weights_bytes"],
            quantization=v.get("quantization"), kv_cache_dtype=v.get("kv_cache_dtype"),
            gated=v.get("gated"), description=v.get("description"),
        )
        for v in data.get("variants", ())
    )
    return Model(
        model_id=data["model_id"],
        huggingface_id=data["huggingface_id"],
        slug=data.get("slug") or default_slug(data["model_id"]),
        architecture=data["architecture"],
        parameters_total=data["parameters"]["total"],
        parameters_active=data["parameters"]["active"],
        layers=data["layers"],
        hidden_size=data["hidden_size"],
        attention=attention,
        max_position_embeddings=data["max_position_embeddings"],
        vocab_size=data["vocab_size"],
        native_dtype=data["native_dtype"],
        weights_bytes=data["weights_bytes"],
        license=data["license"],
        gated=data["gated"],
        trust_remote_code=data["trust_remote_code"],
        aliases=tuple(data.get("aliases", ())),
        moe=moe,
        intermediate_size=data.get("intermediate_size"),
        multimodal=bool(data.get("multimodal", False)),
        variants=variants,
        description=data.get("description"),
        source=source,
    )


def gpus_of(config_name: str) -> int:
    """"8_gpu" -> 8, "2x8_gpu" -> 8: GPUs per node (the schema guarantees the shape)."""
    return config_shape(config_name)[1]


def to_recipe(data: dict[str, Any], source: Path | None = None) -> Recipe:
    configs = []
    for section, engine in SERVE_SECTIONS.items():
        for name, config in (data.get(section) or {}).items():
            nodes, gpus = config_shape(name)
            configs.append(ServeConfig(
                engine=engine, gpus=gpus, enabled=config["enabled"],
                args=dict(config.get("args") or {}), env=dict(config.get("env") or {}), nodes=nodes,
            ))
    return Recipe(
        recipe_id=data["recipe_id"], model_id=data["model_id"], huggingface_id=data["huggingface_id"],
        hardware=data["hardware"], precision=data["precision"], configs=tuple(configs),
        description=data.get("description"), generated=bool(data.get("generated", False)), source=source,
    )


# `N_gpu` (one node) or `MxN_gpu` (M ≥ 2 nodes of N GPUs); recipes/schema.json has the same pattern.
_CONFIG_NAME = re.compile(r"^(?:(?:[2-9]|[1-9][0-9]+)x)?[1-9][0-9]*_gpu$")
_ARG_NAME = re.compile(r"^--[a-z0-9][a-z0-9-]*$")
_PRECISIONS = ("fp16", "bf16", "fp8", "int8", "int4", "mixed")


def salvage_recipe(data: Any, source: Path | None = None) -> Recipe | None:
    """A best-effort `Recipe` from a document that failed the schema, so the validator can
    still report the meaning problems of its sound parts (every problem, not just the first
    kind). Parts too broken to read are left out; their schema problems are already reported.
    None when even the identity fields are unusable."""
    if not isinstance(data, dict):
        return None
    head = {k: data.get(k) for k in ("recipe_id", "model_id", "huggingface_id", "hardware", "precision")}
    if not all(isinstance(v, str) and v for v in head.values()) or head["precision"] not in _PRECISIONS:
        return None
    configs = []
    for section, engine in SERVE_SECTIONS.items():
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for name, config in entries.items():
            if not (_CONFIG_NAME.match(name) and isinstance(config, dict) and isinstance(config.get("enabled"), bool)):
                continue
            args = config.get("args") if isinstance(config.get("args"), dict) else {}
            env = config.get("env") if isinstance(config.get("env"), dict) else {}
            nodes, gpus = config_shape(name)
            configs.append(ServeConfig(engine=engine, gpus=gpus, enabled=config["enabled"],
                                       args={k: v for k, v in args.items() if isinstance(k, str) and _ARG_NAME.match(k)},
                                       env={k: str(v) for k, v in env.items()}, nodes=nodes))
    return Recipe(**head, configs=tuple(configs), source=source)


# ----------------------------------------------------------------------------------- reading
def read_document(kind: str, path: Path) -> Document:
    """Read, parse, schema-check and convert one file; every failure becomes a problem."""
    doc = Document(kind=kind, path=path)
    try:
        doc.text = read_text(path)
        doc.data = parse(doc.text)
    except YamlSyntaxError as exc:
        if exc.check == "file":
            doc.problems.append(Problem(file=doc.display, line=None, message=f"the file {exc.message}",
                                        hint=f"a {kind} file is a regular UTF-8 YAML file; replace or remove it",
                                        check="file"))
        else:
            doc.problems.append(Problem(file=doc.display, line=exc.line, message=f"invalid YAML: {exc.message}",
                                        hint="fix the YAML (indentation, quoting, ':' after keys, each key once)",
                                        check="yaml"))
        return doc
    doc.problems.extend(schema_problems(doc))
    if doc.problems:
        if kind == RECIPE:
            doc.salvaged = salvage_recipe(doc.data, path)
    else:
        try:
            doc.obj = (to_recipe if kind == RECIPE else to_model)(doc.data, path)
        except (KeyError, TypeError, ValueError) as exc:  # schema.json and types.py disagree: a bug
            doc.problems.append(doc.problem("internal-error", (), f"cannot convert the {kind}: {type(exc).__name__}: {exc}",
                                            f"the {kind} schema and catalog/types.py disagree; please report this"))
    return doc


def read_documents(kind: str, files: Iterable[Path]) -> list[Document]:
    return [read_document(kind, path) for path in files]


def read_trusted(kind: str, path: Path) -> Any:
    """Parse and convert one file of the shipped catalog, without the schema check.

    The shipped catalog is validated in CI (`aim-engine validate` over it in the tests), so boot
    does not pay for jsonschema (importing it and checking ~200 files took ~0.6 s). A file that
    still cannot be converted (a hand-edited image, a broken install) is an `AimError` naming
    it, never a traceback and never a guess."""
    try:
        text = read_text(path)
        data = yaml_documents.compiled(path, text)
        if data is yaml_documents.MISSING:
            data = parse(text)
        return (to_recipe if kind == RECIPE else to_model)(data, path)
    except YamlSyntaxError as exc:
        where = f"{display_path(path)}:{exc.line}" if exc.line else display_path(path)
        reason = f"the file {exc.message}" if exc.check == "file" else f"invalid YAML: {exc.message}"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        where, reason = display_path(path), f"cannot read the {kind}: {type(exc).__name__}: {exc}"
    raise AimError(f"the shipped catalog file {where} is broken: {reason}",
                   hint="run `aim-engine validate` for the full report; reinstall aim-engine or fix the file")
