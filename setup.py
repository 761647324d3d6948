"""Build hook: ship the catalog (recipes/, models/) inside the package.

pyproject.toml holds all project metadata. The catalog lives at the repository root (where
people edit it), outside the package directory `entrypoint/aim_engine`; setuptools cannot map a
directory outside `packages.find` into a package declaratively, so this hook copies it to
`aim_engine/_catalog/{recipes,models}` in the build tree. `aim_engine.catalog.paths` looks there
first and falls back to the source checkout (editable installs, running from the clone).

It then compiles every YAML file of the built package (the catalog and the data tables) into
`aim_engine/_compiled_yaml.json`, so a boot reads JSON instead of importing PyYAML and parsing
(see `aim_engine/yaml_documents.py`, which checks each file's digest before trusting its entry).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CATALOG_DIRS = ("recipes", "models")
CATALOG_SUFFIXES = (".yaml", ".yml", ".json", ".md")


class build_py_with_catalog(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's catalog directly
        for name in CATALOG_DIRS:
            source = ROOT / name
            target = Path(self.build_lib) / "aim_engine" / "_catalog" / name
            if target.exists():
                shutil.rmtree(target)
            for path in sorted(source.rglob("*")):
                if path.is_file() and path.suffix in CATALOG_SUFFIXES:
                    dest = target / path.relative_to(source)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest)
        _yaml_documents().compile_tree(Path(self.build_lib) / "aim_engine")


def _yaml_documents():
    """aim_engine/yaml_documents.py on its own (stdlib only at import), without importing the package."""
    spec = importlib.util.spec_from_file_location("_aim_yaml_documents", ROOT / "entrypoint/aim_engine/yaml_documents.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup(cmdclass={"build_py": build_py_with_catalog})
