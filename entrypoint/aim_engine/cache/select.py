"""Which files of a repo the engine needs (pure: a listing in, a list of paths out).

vLLM and SGLang load one weights format from the model's root directory: safetensors when any
exist, else PyTorch `.bin` (then `.pt`/`.pth`). When the format's index (`*.index.json`) exists,
only the shards it names are loaded (Mistral repos also carry `consolidated.safetensors`, a
second full copy). Besides weights they read configs, tokenizer files, generation config, chat
templates and, with trust-remote-code, Python modules. Nothing under `original/` (Meta's
checkpoint format) is read, nor other frameworks' weights (Flax, TF, ONNX, GGUF).
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass
from typing import Iterable

# Weights formats in order of preference: (file pattern, index file name).
WEIGHT_FORMATS: tuple[tuple[str, str], ...] = (
    ("*.safetensors", "model.safetensors.index.json"),
    ("*.bin", "pytorch_model.bin.index.json"),
    ("*.pt", "pytorch_model.pt.index.json"),
    ("*.pth", "pytorch_model.pth.index.json"),
)
WEIGHT_PATTERNS = tuple(p for p, _ in WEIGHT_FORMATS)

# Everything else the engine (or transformers' config/tokenizer loaders it calls) may read.
SUPPORT_PATTERNS: tuple[str, ...] = (
    "*.json",            # config, generation_config, tokenizer(_config), special_tokens_map, preprocessor, indexes
    "*.jinja",           # chat_template.jinja
    "*.model",           # sentencepiece tokenizer.model / spiece.model
    "*.tiktoken",        # tiktoken vocabularies
    "*.txt",             # merges.txt, vocab.txt
    "tokenizer*",        # any other tokenizer file
    "vocab*",
    "*.py",              # trust-remote-code modules
)

# Never fetched, whatever the patterns say.
EXCLUDED_DIRS: tuple[str, ...] = ("original", ".git")
EXCLUDED_FILES: tuple[str, ...] = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth",
                                   "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.gguf", "*.ot", "*.tflite")


@dataclass(frozen=True)
class RemoteFile:
    """One file of the listing: `etag` is the blob name huggingface_hub stores it under."""

    path: str
    size: int
    blob_id: str | None = None
    sha256: str | None = None       # LFS files only

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str | None:
        return self.sha256 or self.blob_id


def _match(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _excluded(path: str) -> bool:
    top = path.split("/", 1)[0]
    if "/" in path and top in EXCLUDED_DIRS:
        return True
    return _match(posixpath.basename(path), EXCLUDED_FILES)


def weights_format(paths: Iterable[str]) -> tuple[str, str] | None:
    """The weights format the engine would load: the first of WEIGHT_FORMATS present at the root."""
    root = [p for p in paths if "/" not in p and not _excluded(p)]
    for pattern, index in WEIGHT_FORMATS:
        if any(fnmatch.fnmatchcase(p, pattern) for p in root):
            return pattern, index
    return None


def select_files(files: Iterable[RemoteFile]) -> list[RemoteFile]:
    """The files to download, in listing order (index-based shard filtering is `filter_by_index`)."""
    files = list(files)
    chosen = weights_format(f.path for f in files)
    other_indexes = {index for _, index in WEIGHT_FORMATS if chosen is None or index != chosen[1]}
    selected = []
    for f in files:
        name = posixpath.basename(f.path)
        if _excluded(f.path) or f.path in other_indexes:
            continue
        if _match(name, WEIGHT_PATTERNS):
            # Weights: only the chosen format, only at the root (where the engines look).
            if chosen is not None and "/" not in f.path and fnmatch.fnmatchcase(name, chosen[0]):
                selected.append(f)
            continue
        if _match(name, SUPPORT_PATTERNS):
            selected.append(f)
    return selected


def filter_by_index(selected: list[RemoteFile], index_files: set[str], pattern: str) -> list[RemoteFile]:
    """Drop root weight files of `pattern` that the format's index does not name (duplicates)."""
    if not index_files:
        return selected
    return [f for f in selected
            if not ("/" not in f.path and fnmatch.fnmatchcase(f.path, pattern) and f.path not in index_files)]
