"""What a model directory's ``generation_config.json`` may make a vLLM worker sample with, unasked.

vLLM (``--generation-config auto``, its default) takes a request's unset
sampling settings from the model's ``generation_config.json``: a Qwen
directory's ``top_p 0.8`` applies to every request that does not say ``top_p``.
Whether a worker's vLLM does that is the host's choice (``--generation-config
vllm`` does not), so a sampled answer is scored only where it does not matter:
every setting the file sets to something other than vLLM's neutral value is
one the request states itself, and only ``temperature`` and ``top_p`` can be
(the rest are beyond what ``routing.verification.scorable`` lets through).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE = "generation_config.json"
# vLLM's sampler settings a generation config can default, and the value that leaves sampling alone.
NEUTRAL: Mapping[str, float] = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class GenerationDefaults:
    set: Mapping[str, float] = field(default_factory=dict)  # the sampler settings the file sets, not neutral

    @classmethod
    def read(cls, folder: Path) -> GenerationDefaults:
        """From ``folder``'s file (none, or unreadable: nothing set, as vLLM reads it)."""
        path = folder / FILE
        try:
            if path.stat().st_size > _MAX_BYTES:
                return cls()
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(config, dict):
            return cls()
        return cls({name: value for name, value in _numbers(config).items() if not _neutral(name, value)})

    def unstated(self, body: Mapping[str, Any]) -> str | None:
        """A setting this file defaults that the request leaves to the worker's vLLM (None: none)."""
        for name, value in sorted(self.set.items()):
            if name not in body or body[name] is None:
                return f"{FILE} sets {name} = {value:g} and the request does not say"
        return None


def _numbers(config: Mapping[str, Any]) -> dict[str, float]:
    return {
        name: float(value)
        for name in NEUTRAL
        if isinstance(value := config.get(name), int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _neutral(name: str, value: float) -> bool:
    if name == "top_k":
        return value <= 0  # vLLM: 0 or -1, every token
    return value == NEUTRAL[name]
