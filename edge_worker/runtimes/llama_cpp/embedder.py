"""One loaded GGUF embedding model: each input pooled to one unit-length vector.

A GGUF file is an embedding model when it says how to pool (mean, CLS or
last token: ``{arch}.pooling_type``); BERT-style encoders and decoder models
trained for embeddings both do. It embeds and generates nothing, so its offer
says ``embeddings`` and not ``generation``.

Requests take turns (one at a time, then a bounded queue, as ``Admission``
does for generation); each request's inputs are packed into as few
``llama_decode`` calls as the batch allows, many sequences per call. The
context is not thread-safe, so everything that touches it runs on the
model's one thread. Vectors are L2-normalized, as OpenAI's are, so a dot
product is a cosine similarity.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_worker.runtimes.llama_cpp.admission import Admission, Admitted
from edge_worker.runtimes.llama_cpp.catalog import (
    GgufFacts,
    context_per_sequence,
    facts_from_metadata,
    file_sha256,
)
from edge_worker.runtimes.llama_cpp.gguf import read_metadata
from edge_worker.runtimes.llama_cpp.offload import gpu_layers_for_llama
from routing.capabilities import EMBEDDING_ONLY
from routing.embedding_requests import EmbeddingInput, EmbeddingRequest
from routing.errors import ContextLengthExceeded, InvalidRequest
from routing.openai_requests import GenerationRequest

# llama.cpp's pooling types that give one vector per sequence (4, "rank", is a reranker's score).
_POOLED = {1: "mean", 2: "cls", 3: "last"}


def is_embedding_model(metadata: dict[str, Any]) -> bool:
    pooling = metadata.get(f"{metadata.get('general.architecture', '')}.pooling_type")
    return isinstance(pooling, int) and pooling in _POOLED


def load_embedding_llama(
    path: Path, *, context_length: int, threads: int, max_context: int, gpu_layers: int = 0
) -> tuple[Any, GgufFacts]:
    """Load an embedding GGUF (blocking: call it from a thread); each input must fit ``context_length``."""
    from llama_cpp import Llama

    n_gpu_layers = gpu_layers_for_llama(gpu_layers)
    metadata = read_metadata(path)
    n_ctx = context_per_sequence(metadata, context_length, max_context)
    # An encoder reads a whole sequence in one micro-batch: the batch is as large as the context.
    llm = Llama(
        model_path=str(path),
        embedding=True,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=threads or None,
        n_gpu_layers=n_gpu_layers,
        verbose=False,
    )
    return llm, facts_from_metadata(metadata, path, n_ctx, file_sha256(path))


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: np.ndarray  # float32, one unit-length row per input, in input order
    prompt_tokens: int


class LlamaCppEmbedder(Admitted):
    """An embedding model behind the worker's routes (``ModelRuntime``, with ``embed`` instead of ``start``)."""

    slots = 1

    def __init__(self, llm: Any, facts: GgufFacts, *, max_queue: int):
        self._llm = llm
        self.facts = facts
        self.offer = replace(facts.offer, capabilities=EMBEDDING_ONLY)
        self.dimensions = int(llm.n_embd())
        # llama.cpp rounds the context up (to 256); a batch holds exactly what was asked, and so does an input.
        self._n_ctx = min(int(llm.n_ctx()), int(llm.n_batch))
        self._n_vocab = int(llm.n_vocab())
        self._max_sequences = int(llm.context_params.n_seq_max)
        self._admission = Admission(max_queue, slots=1, model=self.offer.model)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"embed-{self.offer.model}")

    async def start(self, request: GenerationRequest) -> list[Any]:
        """Refused: an embedding model generates nothing (a 400 naming ``generation``)."""
        self.offer.capabilities.require(request.needs, self.offer.model)
        raise AssertionError("an embedding model's capabilities never include generation")

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if request.dimensions is not None and request.dimensions != self.dimensions:
            raise InvalidRequest(
                f"model '{self.offer.model}' makes {self.dimensions}-dimensional embeddings and cannot "
                f"shorten them to {request.dimensions}; leave 'dimensions' out.",
                param="dimensions",
                code="unsupported_parameter",
            )
        loop = asyncio.get_running_loop()
        tokens = await loop.run_in_executor(self._thread, self._tokenize, request.inputs)
        await self._admission.acquire()
        started = time.monotonic()
        stop = threading.Event()
        try:
            vectors = await loop.run_in_executor(self._thread, self._encode, tokens, stop)
        finally:
            stop.set()  # a client that left stops the work between batches
            self._admission.release(time.monotonic() - started)
        return Embeddings(vectors, sum(len(t) for t in tokens))

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._llm.close)
        self._thread.shutdown()

    def _tokenize(self, inputs: Sequence[EmbeddingInput]) -> list[list[int]]:
        out: list[list[int]] = []
        for index, item in enumerate(inputs):
            if isinstance(item, str):
                tokens = self._llm.tokenize(item.encode("utf-8"), add_bos=True, special=False)
            else:
                tokens = list(item)
                if max(tokens) >= self._n_vocab:
                    raise InvalidRequest(
                        f"'input[{index}]' holds a token id past the model's vocabulary ({self._n_vocab} tokens).",
                        param="input",
                    )
            if len(tokens) > self._n_ctx:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self._n_ctx} tokens, however input[{index}] "
                    f"has {len(tokens)} tokens. Please shorten it.",
                    param="input",
                )
            out.append(tokens)
        return out

    def _encode(self, inputs: list[list[int]], stop: threading.Event) -> np.ndarray:
        """On the model's thread: every input's pooled, normalized vector."""
        import llama_cpp as lc

        llm, batch = self._llm, self._llm._batch
        vectors = np.empty((len(inputs), self.dimensions), dtype=np.float32)
        group: list[int] = []  # indices of the inputs in the batch being built
        used = 0

        def flush() -> None:
            llm._ctx.kv_cache_clear()
            llm._ctx.decode(batch)
            for seq, index in enumerate(group):
                pooled = lc.llama_get_embeddings_seq(llm._ctx.ctx, seq)
                vectors[index] = np.ctypeslib.as_array(pooled, shape=(self.dimensions,))
            batch.reset()
            group.clear()

        batch.reset()
        try:
            for index, tokens in enumerate(inputs):
                if group and (used + len(tokens) > self._n_ctx or len(group) >= self._max_sequences):
                    flush()
                    used = 0
                    if stop.is_set():
                        raise _Stopped("the request went away")
                batch.add_sequence(tokens, len(group), True)
                group.append(index)
                used += len(tokens)
            flush()
        finally:
            batch.reset()
            llm._ctx.kv_cache_clear()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)


class _Stopped(Exception):
    """The request went away: the rest of its inputs are not worth encoding."""
