"""Build the tiny demo model `make run` and the end-to-end tests serve: a random-weight Llama.

Why it looks like this:
- head_dim 64 (hidden 128, 2 heads): vLLM's CPU attention kernels accept only 32/64/80/96/112/128;
- a tokenizer trained here (tokenizers BPE on the embedded text below), because the Hugging Face
  hub is not reachable and nothing may be downloaded at test time;
- a chat template, so /v1/chat/completions works;
- safetensors in two shards with an index (as real checkpoints are), float32 (the dtype the CPU
  backend starts fastest with).

Deterministic (fixed seed, single-threaded tokenizer training) and built in a few seconds. The
directory is written to a temporary sibling and renamed into place, so an interrupted build never
leaves a half model; an existing build with the same recipe (`aim-demo.json`) is reused.

Runs with the vLLM environment's python (it has torch, transformers and tokenizers):
    python scripts/make_demo_model.py OUT_DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Everything that changes the output is in RECIPE; its hash names the build.
RECIPE = {
    "version": 2,
    "seed": 1234,
    "vocab_size": 512,
    "hidden_size": 128,
    "num_attention_heads": 2,       # head_dim = 128 / 2 = 64
    "num_key_value_heads": 1,       # GQA, like the real models in the catalog
    "num_hidden_layers": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 2048,
    "max_shard_size": "1MB",        # two shards + model.safetensors.index.json, like real checkpoints
}

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

TEXT = """
AIM Engine boots an inference engine for a model on AMD Instinct GPUs or on a plain CPU.
It detects the hardware, chooses a recipe, warms a persistent model cache under a lock,
renders the recipe into engine flags and then becomes the engine, keeping its process id.
The health probes answer from the first second: live, ready, startup and status.
A client sends a prompt; the server answers with tokens. Hello, world! How are you today?
The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.
Once upon a time there was a small model that knew very little but answered every question.
What is the capital of France? Paris is the capital of France. Tell me a story about a cat.
def main(): print("hello") return 0 # code, too: brackets () [] {} and symbols + - * / = < >
"""


def build_id() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=RECIPE["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in TEXT.splitlines() if line.strip()]
    tokenizer.train_from_iterator(lines * 4, trainer=trainer)
    return tokenizer


def build(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(RECIPE["seed"])
    raw = train_tokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="<|end|>", unk_token="<unk>", pad_token="<pad>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "</s>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = RECIPE["max_position_embeddings"]
    config = LlamaConfig(
        vocab_size=RECIPE["vocab_size"],
        hidden_size=RECIPE["hidden_size"],
        intermediate_size=RECIPE["intermediate_size"],
        num_hidden_layers=RECIPE["num_hidden_layers"],
        num_attention_heads=RECIPE["num_attention_heads"],
        num_key_value_heads=RECIPE["num_key_value_heads"],
        head_dim=RECIPE["hidden_size"] // RECIPE["num_attention_heads"],
        max_position_embeddings=RECIPE["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config.max_length = RECIPE["max_position_embeddings"]
    model.save_pretrained(out, safe_serialization=True, max_shard_size=RECIPE["max_shard_size"])
    tokenizer.save_pretrained(out)
    # Some tokenizer versions store the template only in chat_template.jinja; keep it in the
    # config as well so every reader (vLLM, older transformers) finds it.
    tok_cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    tok_cfg["chat_template"] = CHAT_TEMPLATE
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(
        "# aim-demo tiny llama\n\nRandom weights, for smoke tests only: it answers with noise.\n"
        "Built by scripts/make_demo_model.py.\n")
    (out / "aim-demo.json").write_text(json.dumps({"build": build_id(), "recipe": RECIPE}, indent=2) + "\n")


def ensure(out: Path) -> Path:
    """Build the model at `out` unless a build of the same recipe is already there."""
    marker = out / "aim-demo.json"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("build") == build_id():
                return out
        except ValueError:
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        build(tmp)
        for path in (tmp, *tmp.iterdir()):  # mkdtemp and safetensors create owner-only modes
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to create (reused when already built)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = ensure(args.out.resolve())
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
