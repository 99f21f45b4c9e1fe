"""The models this worker has loaded in-process (llama.cpp), found by id, alias or ``id:QUANT``."""

from __future__ import annotations

import asyncio

from edge_worker.runtimes.llama_cpp.events import ModelRuntime
from routing.errors import ModelNotFound
from routing.fleet import Load, ModelOffer
from routing.model_ref import parse_model_ref


class ModelSet:
    """The llama.cpp backend: every loaded GGUF model, one generation at a time each."""

    runtime = "llama.cpp"

    def __init__(self, runtimes: list[ModelRuntime], *, capacity: int = 1):
        self.runtimes = runtimes
        self.capacity = capacity
        self.ready = asyncio.Event()
        self.ready.set()  # built once the models are loaded

    @property
    def serving(self) -> bool:
        return True  # built once the models are loaded; a busy model says so per request

    def offers(self) -> tuple[ModelOffer, ...]:
        return tuple(r.offer for r in self.runtimes)

    def load(self) -> Load:
        return Load(in_flight=sum(r.in_flight for r in self.runtimes), queued=sum(r.queued for r in self.runtimes))

    def lookup(self, name: str) -> ModelRuntime:
        ref = parse_model_ref(name)
        wanted = ref.name.lower()
        for runtime in self.runtimes:
            offer = runtime.offer
            if wanted in (n.lower() for n in offer.names) and (
                not ref.quantization or offer.quantization.matches(ref.quantization)
            ):
                return runtime
        served = ", ".join(sorted({r.offer.model for r in self.runtimes}))
        raise ModelNotFound(f"The model '{name}' is not loaded on this worker (it serves: {served}).", param="model")
