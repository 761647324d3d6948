"""File selection: what the engine needs from a repo listing (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aim_engine.cache.select import RemoteFile, filter_by_index, select_files, weights_format


def names(paths):
    return sorted(f.path for f in select_files([RemoteFile(p, 1) for p in paths]))


LLAMA = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
         "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
         "tokenizer_config.json", "special_tokens_map.json", "original/consolidated.00.pth", "original/params.json",
         "original/tokenizer.model", "README.md", "LICENSE", ".gitattributes", "USE_POLICY.md",
         "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json"]


def test_llama_style_repo_keeps_safetensors_and_drops_duplicates():
    assert names(LLAMA) == ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                            "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                            "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]


def test_bin_only_repo_keeps_bin_but_not_training_state():
    got = names(["config.json", "pytorch_model.bin", "training_args.bin", "vocab.txt", "merges.txt",
                 "flax_model.msgpack", "tf_model.h5", "onnx/model.onnx"])
    assert got == ["config.json", "merges.txt", "pytorch_model.bin", "vocab.txt"]


def test_remote_code_templates_and_tokenizers_are_kept():
    got = names(["config.json", "model.safetensors", "modeling_x.py", "configuration_x.py", "chat_template.jinja",
                 "qwen.tiktoken", "tokenizer.model", "spiece.model", "model.gguf", "images/logo.png"])
    assert got == ["chat_template.jinja", "config.json", "configuration_x.py", "model.safetensors",
                   "modeling_x.py", "qwen.tiktoken", "spiece.model", "tokenizer.model"]


def test_weights_only_from_the_root():
    assert weights_format(["sub/model.safetensors", "pytorch_model.bin"]) == ("*.bin", "pytorch_model.bin.index.json")
    assert names(["sub/model.safetensors", "pytorch_model.bin"]) == ["pytorch_model.bin"]


def test_index_filters_duplicate_shards():
    files = [RemoteFile(p, 1) for p in ("model-00001-of-00001.safetensors", "consolidated.safetensors",
                                        "model.safetensors.index.json")]
    kept = filter_by_index(select_files(files), {"model-00001-of-00001.safetensors"}, "*.safetensors")
    assert sorted(f.path for f in kept) == ["model-00001-of-00001.safetensors", "model.safetensors.index.json"]
    assert filter_by_index(files, set(), "*.safetensors") == files


path_part = st.text(alphabet="abcdefghij-_.0123456789", min_size=1, max_size=12)
paths = st.lists(st.builds(lambda parts, ext: "/".join(parts) + ext,
                           st.lists(path_part, min_size=1, max_size=3),
                           st.sampled_from([".safetensors", ".bin", ".json", ".pth", ".md", ".py", ".txt", ""])),
                 max_size=30, unique=True)


@given(paths)
def test_selection_invariants(listing):
    chosen = names(listing)
    assert set(chosen) <= set(listing)
    assert not any(p.startswith("original/") for p in chosen)
    weight_exts = {p.rsplit(".", 1)[-1] for p in chosen if p.endswith((".safetensors", ".bin", ".pt", ".pth"))}
    assert len(weight_exts) <= 1                      # one weights format, never two copies
    assert not any("/" in p for p in chosen if p.endswith((".safetensors", ".bin", ".pt", ".pth")))
