"""What a Hugging Face model directory says about itself: quantization and context length.

vLLM serves HF-format models; their ``config.json`` names the quantization
(``quantization_config``: AWQ, GPTQ, FP8, compressed-tensors, bitsandbytes…)
or, for unquantized weights, the dtype. Both are normalized into the same
``Quantization`` descriptor GGUF files get (label, bits, class).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from routing.quantization import Quantization, from_label, integer_class


def find_config(model: str) -> Path | None:
    """``config.json`` of a local model directory, or of a hub id already in the HF cache."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local / "config.json" if (local / "config.json").is_file() else None
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    snapshots = hub.expanduser() / f"models--{model.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1] if found else None


def read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def quantization_from_config(config: dict[str, Any]) -> Quantization:
    q = config.get("quantization_config")
    if isinstance(q, dict):
        method = str(q.get("quant_method", "")).lower()
        if method == "compressed-tensors":
            return _compressed_tensors(q)
        if method == "bitsandbytes":
            bits = 4 if q.get("load_in_4bit") else 8
            return Quantization("bitsandbytes", bits, integer_class(bits))
        if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
            bits = int(q.get("bits") or q.get("w_bit") or 4)
            return Quantization(method, bits, integer_class(bits))
        if method:
            return from_label(method)
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "")
    return from_label(dtype) if dtype else Quantization("unknown", 0, "unknown")


def _compressed_tensors(q: dict[str, Any]) -> Quantization:
    """Neural Magic / llm-compressor: the weights' scheme in the first config group."""
    groups = q.get("config_groups") or {}
    weights: dict[str, Any] = {}
    for group in groups.values():
        if isinstance(group, dict) and isinstance(group.get("weights"), dict):
            weights = group["weights"]
            break
    bits = int(weights.get("num_bits", 0) or 0)
    kind = str(weights.get("type", "int"))
    if kind == "float":
        label, cls = (f"fp{bits}", f"fp{bits}") if bits in (4, 8) else ("compressed-tensors", "unknown")
    else:
        label, cls = (f"w{bits}a16" if bits else "compressed-tensors"), (integer_class(bits) if bits else "unknown")
    activations = next((g.get("input_activations") for g in groups.values() if isinstance(g, dict)), None)
    if kind != "float" and bits and isinstance(activations, dict) and activations.get("num_bits"):
        label = f"w{bits}a{activations['num_bits']}"
    return Quantization(label, bits, cls)


def context_from_config(config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 0
