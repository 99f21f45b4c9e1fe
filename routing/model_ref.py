"""How clients, configs and gateways name a model at a quantization: ``model[:QUANT]``, one rule.

The quantization follows the *last* colon, and only when it is one: a label
(``Q8_0``, ``awq``, ``bf16``) or a class (``int8``). Otherwise the colon
belongs to the name, as in Ollama's tags (``llama3.2:3b``), so
``llama3.2:3b:Q4_K_M`` is that model at Q4_K_M.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.quantization import QUANT_CLASSES, from_label


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str  # a model id or alias
    quantization: str = ""  # a label or class; empty = any


def parse_model_ref(ref: str) -> ModelRef:
    name, colon, suffix = ref.rpartition(":")
    if colon and name and _is_quantization(suffix):
        return ModelRef(name, suffix)
    return ModelRef(ref)


def _is_quantization(text: str) -> bool:
    return text.lower() in QUANT_CLASSES or from_label(text).quant_class != "unknown"
