"""The models this worker has loaded, found by id, alias or ``id:QUANT``."""

from __future__ import annotations

from edge_worker.runtimes.base import ModelRuntime
from routing.errors import ModelNotFound


class ModelSet:
    def __init__(self, runtimes: list[ModelRuntime]):
        self.runtimes = runtimes

    def lookup(self, name: str) -> ModelRuntime:
        wanted, _, quant = name.lower().partition(":")
        for runtime in self.runtimes:
            offer = runtime.offer
            if wanted in (n.lower() for n in offer.names) and (not quant or offer.quantization.matches(quant)):
                return runtime
        served = ", ".join(sorted({r.offer.model for r in self.runtimes}))
        raise ModelNotFound(f"The model '{name}' is not loaded on this worker (it serves: {served}).", param="model")
