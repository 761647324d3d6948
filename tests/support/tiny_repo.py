"""Generate a small Hugging Face model repository on disk, shaped like a real one.

`make_repo(directory, shards=2, shard_bytes=64_000)` writes what an engine needs:

- `model-0000K-of-0000N.safetensors` shards (valid safetensors: 8-byte header length, JSON header,
  tensor bytes) and `model.safetensors.index.json` mapping every tensor to its shard;
- `config.json` (a tiny Llama), `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`
  (with a chat template), `special_tokens_map.json`, `tokenizer.model`;

and the decoys a real repo carries that must NOT be fetched when safetensors exist:

- `pytorch_model-0000K-of-0000N.bin` + `pytorch_model.bin.index.json` (the same weights again),
- `original/consolidated.00.pth` + `original/params.json` (Meta's format),
- `consolidated.safetensors` (Mistral-format weights, not in the index), `training_args.bin`,
- `README.md`, `.gitattributes`, `flax_model.msgpack`.

`bin_only=True` writes a repo with `.bin` weights and no safetensors (then `.bin` is what is needed).
The returned `TinyRepo` lists `needed` (what the cache must fetch) and `decoys`.
Content is deterministic for a `seed`, so two calls give the same commit on the test hub.
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TinyRepo:
    path: Path
    needed: list[str] = field(default_factory=list)
    decoys: list[str] = field(default_factory=list)

    @property
    def needed_bytes(self) -> int:
        return sum((self.path / f).stat().st_size for f in self.needed)

    @property
    def shards(self) -> list[str]:
        return [f for f in self.needed if f.endswith((".safetensors", ".bin"))]


def _payload(rng: random.Random, n: int) -> bytes:
    # randbytes is fast enough for a few hundred MB and deterministic per seed.
    return rng.randbytes(n)


def _write_safetensors(path: Path, tensors: dict[str, int], rng: random.Random) -> None:
    """Write a valid safetensors file of uint8 tensors with the given byte sizes."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, size in tensors.items():
        header[name] = {"dtype": "BF16", "shape": [size // 2], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for size in tensors.values():
            remaining = size
            while remaining:
                n = min(remaining, 8 << 20)
                f.write(_payload(rng, n))
                remaining -= n


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def make_repo(directory: str | Path, shards: int = 2, shard_bytes: int = 64_000, seed: int = 0,
              bin_only: bool = False, decoys: bool = True) -> TinyRepo:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    repo = TinyRepo(root)

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
              "intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1,
              "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 512,
              "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
    small = {
        "config.json": json.dumps(config, indent=2),
        "generation_config.json": json.dumps({"bos_token_id": 1, "eos_token_id": 2, "temperature": 0.7}),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                      "seed": seed}),
        "tokenizer_config.json": json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                             "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}),
        "special_tokens_map.json": json.dumps({"bos_token": "<s>", "eos_token": "</s>"}),
    }
    for name, text in small.items():
        _write(root / name, text)
        repo.needed.append(name)
    _write(root / "tokenizer.model", _payload(rng, 2048))
    repo.needed.append("tokenizer.model")

    layers_per_shard = 2
    weight_map: dict[str, str] = {}
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    bins = [f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin" for i in range(shards)]
    for i in range(shards):
        tensors = {f"model.layers.{i * layers_per_shard + j}.weight": shard_bytes // layers_per_shard
                   for j in range(layers_per_shard)}
        if bin_only:
            _write(root / bins[i], _payload(rng, shard_bytes))
            weight_map.update({t: bins[i] for t in tensors})
            repo.needed.append(bins[i])
        else:
            _write_safetensors(root / names[i], tensors, rng)
            weight_map.update({t: names[i] for t in tensors})
            repo.needed.append(names[i])
    index_name = "pytorch_model.bin.index.json" if bin_only else "model.safetensors.index.json"
    _write(root / index_name, json.dumps({"metadata": {"total_size": shards * shard_bytes},
                                          "weight_map": weight_map}, indent=2))
    repo.needed.append(index_name)

    if decoys:
        extra: dict[str, bytes | str] = {
            "README.md": "# tiny test model\n",
            ".gitattributes": "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
            "original/params.json": json.dumps({"dim": 64}),
            "original/consolidated.00.pth": _payload(rng, shard_bytes),
            "training_args.bin": _payload(rng, 512),
            "flax_model.msgpack": _payload(rng, 1024),
        }
        if not bin_only:
            extra["consolidated.safetensors"] = _payload(rng, shard_bytes)
            extra["pytorch_model.bin.index.json"] = json.dumps(
                {"metadata": {"total_size": shards * shard_bytes}, "weight_map": {t: bins[0] for t in weight_map}})
            for name in bins:
                extra[name] = _payload(rng, shard_bytes)
        for name, content in extra.items():
            _write(root / name, content)
            repo.decoys.append(name)
    return repo
