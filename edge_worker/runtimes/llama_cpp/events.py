"""What every runtime offers the worker's API: events out of one generation."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edge_worker.runtimes.llama_cpp.logprobs import TokenLogprob
from edge_worker.runtimes.llama_cpp.output_plan import OutputPlan
from routing.embedding_requests import EmbeddingRequest
from routing.fleet import ModelOffer
from routing.openai_requests import GenerationRequest

if TYPE_CHECKING:
    from edge_worker.runtimes.llama_cpp.embedder import Embeddings


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    tokens: int = 1  # tokens generated since the previous delta
    logprobs: tuple[TokenLogprob, ...] = ()  # of those tokens, where the request asked


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt, read from the KV cache instead of computed
    # What was sampled, for the gateway's audit record (``routing.audit_record``).
    completion_ids: tuple[int, ...] = ()
    end_token: int | None = None  # the end-of-generation token it stopped on, if it did


GenerationEvent = TextDelta | Finished


class Generation(Protocol):
    """One admitted generation: iterate its events; closing it stops it."""

    prompt_tokens: int
    prompt_ids: tuple[int, ...]  # the rendered prompt as read (empty where the runtime cannot say)
    plan: OutputPlan  # what the output must look like, and how to read it back

    def cancel(self) -> None: ...

    def events(self) -> AsyncGenerator[GenerationEvent, None]: ...


class ModelRuntime(Protocol):
    offer: ModelOffer
    slots: int  # sequences it generates at once

    @property
    def in_flight(self) -> int: ...

    @property
    def queued(self) -> int: ...

    async def start(self, request: GenerationRequest) -> Sequence[Generation]:
        """Admit and prepare a request, one generation per choice (``n``); raises Busy or
        ContextLengthExceeded before any output."""
        ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Every input's vector; an InvalidRequest naming ``embeddings`` where the model makes none."""
        ...

    async def close(self) -> None: ...
