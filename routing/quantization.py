"""Quantization descriptors, normalized across runtimes.

A runtime names its quantization its own way (GGUF's ``general.file_type``
enum, vLLM's ``quantization_config``); the fleet speaks one descriptor: the
label as the runtime names it, the nominal weight bits, and a class that
clients filter on (the classes OpenRouter's ``quantizations`` filter uses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUANT_CLASSES = ("int4", "int8", "fp4", "fp8", "fp16", "bf16", "fp32", "unknown")


@dataclass(frozen=True, slots=True)
class Quantization:
    label: str  # as the runtime names it: "Q4_K_M", "Q8_0", "awq", "bf16"
    bits: float  # nominal bits per weight
    quant_class: str  # one of QUANT_CLASSES

    def matches(self, wanted: str) -> bool:
        """True when ``wanted`` names this quantization's class or exact label."""
        w = wanted.strip().lower()
        if w == self.quant_class or w == self.label.lower():
            return True
        # Unquantized weights have one class per float format, however it is spelt (F32, fp32, float32).
        return self.quant_class in _UNQUANTIZED and from_label(w).quant_class == self.quant_class


_UNQUANTIZED = ("fp32", "fp16", "bf16")


def integer_class(bits: float) -> str:
    # Integer formats of 4 bits or fewer share the int4 class; 5-8 bits, int8:
    # a client asking for "int8" wants at least that fidelity class.
    return "int4" if bits <= 4 else "int8"


# llama.cpp's enum llama_ftype (general.file_type in GGUF metadata) → (label, bits).
_GGUF_FILE_TYPES: dict[int, tuple[str, float]] = {
    0: ("F32", 32),
    1: ("F16", 16),
    2: ("Q4_0", 4),
    3: ("Q4_1", 4),
    7: ("Q8_0", 8),
    8: ("Q5_0", 5),
    9: ("Q5_1", 5),
    10: ("Q2_K", 2),
    11: ("Q3_K_S", 3),
    12: ("Q3_K_M", 3),
    13: ("Q3_K_L", 3),
    14: ("Q4_K_S", 4),
    15: ("Q4_K_M", 4),
    16: ("Q5_K_S", 5),
    17: ("Q5_K_M", 5),
    18: ("Q6_K", 6),
    19: ("IQ2_XXS", 2),
    20: ("IQ2_XS", 2),
    21: ("Q2_K_S", 2),
    22: ("IQ3_XS", 3),
    23: ("IQ3_XXS", 3),
    24: ("IQ1_S", 1),
    25: ("IQ4_NL", 4),
    26: ("IQ3_S", 3),
    27: ("IQ3_M", 3),
    28: ("IQ2_S", 2),
    29: ("IQ2_M", 2),
    30: ("IQ4_XS", 4),
    31: ("IQ1_M", 1),
    32: ("BF16", 16),
    36: ("TQ1_0", 1),
    37: ("TQ2_0", 2),
    38: ("MXFP4_MOE", 4),
}

_FLOAT_LABELS: dict[str, str] = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "MXFP4_MOE": "fp4"}


def from_gguf_file_type(file_type: int) -> Quantization:
    """Descriptor for a GGUF ``general.file_type`` value."""
    known = _GGUF_FILE_TYPES.get(file_type)
    if known is None:
        return Quantization(label=f"GGUF_TYPE_{file_type}", bits=0, quant_class="unknown")
    label, bits = known
    return Quantization(label=label, bits=bits, quant_class=_FLOAT_LABELS.get(label) or integer_class(bits))


# Labels other runtimes use (vLLM's quantization methods, plain dtypes) → (bits, class).
_OTHER_LABELS: dict[str, tuple[float, str]] = {
    "awq": (4, "int4"),
    "gptq": (4, "int4"),
    "awq_marlin": (4, "int4"),
    "gptq_marlin": (4, "int4"),
    "bitsandbytes": (4, "int4"),
    "int4": (4, "int4"),
    "int8": (8, "int8"),
    "w8a8": (8, "int8"),
    "fp8": (8, "fp8"),
    "fp4": (4, "fp4"),
    "fp16": (16, "fp16"),
    "float16": (16, "fp16"),
    "bf16": (16, "bf16"),
    "bfloat16": (16, "bf16"),
    "fp32": (32, "fp32"),
    "float32": (32, "fp32"),
}


# torch dtype names → the short labels used everywhere else.
_DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def from_label(label: str) -> Quantization:
    """Descriptor for a label as a person or a runtime writes it: ``Q4_K_M``, ``awq``, ``bf16``…"""
    for gguf_label, bits in _GGUF_FILE_TYPES.values():
        if gguf_label.lower() == label.lower():
            return Quantization(gguf_label, bits, _FLOAT_LABELS.get(gguf_label) or integer_class(bits))
    name = _DTYPE_NAMES.get(label.lower(), label.lower())
    known = _OTHER_LABELS.get(name)
    if known is None:
        return Quantization(label, 0, "unknown")
    bits, quant_class = known
    return Quantization(name, bits, quant_class)


# A GGUF label inside a longer name ("qwen2.5:7b-instruct-q4_K_M", "Llama-3-8B.Q8_0").
_GGUF_IN_NAME = re.compile(r"(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|tq\d_\d|bf16|f16|f32)(?![a-z0-9])", re.I)
_WORDS = re.compile(r"[^a-z0-9]+")
# Other labels as model names carry them ("Qwen2.5-7B-Instruct-AWQ", "…-FP8-dynamic", "…-bnb-4bit").
_NAME_WORDS = {
    "awq": "awq",
    "gptq": "gptq",
    "fp8": "fp8",
    "int4": "int4",
    "int8": "int8",
    "w8a8": "w8a8",
    "bnb": "bitsandbytes",
    "fp16": "fp16",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
}


def from_model_name(name: str) -> Quantization:
    """What a model's name says of its quantization (a plain OpenAI server says nothing else);
    ``unknown`` where it says nothing: an Ollama tag such as ``llama3.2:3b`` names a size, not one."""
    found = _GGUF_IN_NAME.findall(name)
    if found:
        return from_label(found[-1].upper())
    for word in reversed(_WORDS.split(name.lower())):
        if word in _NAME_WORDS:
            return from_label(_NAME_WORDS[word])
    return Quantization("unknown", 0, "unknown")
