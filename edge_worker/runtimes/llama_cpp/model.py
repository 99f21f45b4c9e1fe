"""One loaded GGUF model (llama-cpp-python), for consumer devices and CPUs.

Requests are tokenized here, admitted (``Admission``: as many at once as the
model has slots, then a bounded queue) and handed to the model's
``BatchEngine``, which generates for all of them together. Tokens cross from
its thread to the event loop one by one; a consumer that goes away sets a
flag the engine checks between steps, so a disconnected client stops its
sequence within a step, and the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_worker.runtimes.llama_cpp.admission import Admission, Admitted
from edge_worker.runtimes.llama_cpp.catalog import (
    GgufFacts,
    context_per_sequence,
    facts_from_metadata,
    file_sha256,
)
from edge_worker.runtimes.llama_cpp.embedder import Embeddings
from edge_worker.runtimes.llama_cpp.engine import BatchEngine, EngineStats, Job
from edge_worker.runtimes.llama_cpp.events import Finished, GenerationEvent
from edge_worker.runtimes.llama_cpp.gguf import read_metadata
from edge_worker.runtimes.llama_cpp.logprobs import LogprobReader, TokenLogprob
from edge_worker.runtimes.llama_cpp.offload import gpu_layers_for_llama
from edge_worker.runtimes.llama_cpp.output_plan import PLAIN_TEXT, OutputPlan, plan_output
from edge_worker.runtimes.llama_cpp.prompt import PromptRenderer
from edge_worker.runtimes.llama_cpp.prompt_store import PromptStore
from edge_worker.runtimes.llama_cpp.sampler import SequenceSampler
from routing.capabilities import Capabilities
from routing.embedding_requests import EmbeddingRequest
from routing.errors import ContextLengthExceeded
from routing.openai_requests import GenerationRequest

log = logging.getLogger(__name__)

# The ``Llama`` object is kept for its model, vocabulary and chat template; generation runs in the
# engine's own context, so this one is only as big as llama.cpp allows.
_TOKENIZER_CONTEXT = 256


def load_llama(
    path: Path, *, context_length: int, threads: int, max_context: int, gpu_layers: int = 0
) -> tuple[Any, GgufFacts]:
    """Load a GGUF file (blocking: call it from a thread); ``context_length`` is per sequence,
    ``gpu_layers`` how many layers go to the GPU (-1: all)."""
    from llama_cpp import Llama

    n_gpu_layers = gpu_layers_for_llama(gpu_layers)
    metadata = read_metadata(path)
    n_ctx = context_per_sequence(metadata, context_length, max_context)
    llm = Llama(
        model_path=str(path),
        n_ctx=_TOKENIZER_CONTEXT,
        n_threads=threads or None,
        n_gpu_layers=n_gpu_layers,
        verbose=False,
    )
    return llm, facts_from_metadata(metadata, path, n_ctx, file_sha256(path))


def kv_bytes_per_token(llm: Any) -> int:
    """The KV cache one token of one sequence takes (f16 keys and values, every layer)."""
    import llama_cpp as lc

    model = llm._model.model
    heads, kv_heads = lc.llama_model_n_head(model), lc.llama_model_n_head_kv(model)
    head_dim = lc.llama_model_n_embd(model) // max(1, heads)
    return int(lc.llama_model_n_layer(model) * kv_heads * head_dim * 2 * 2)


class LlamaCppGeneration:
    """One admitted generation: events cross from the model's thread to the event loop through it.

    Building one starts nothing; ``LlamaCppModel.start`` submits its job at
    once, so the admission slot is handed back when the thread finishes,
    even if nobody reads the events.
    """

    def __init__(self, prompt_ids: list[int], loop: asyncio.AbstractEventLoop, plan: OutputPlan = PLAIN_TEXT):
        self.prompt_ids = tuple(prompt_ids)
        self.prompt_tokens = len(prompt_ids)
        self.plan = plan
        self._loop = loop
        self._queue: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        self.cancelled = threading.Event()

    def emit(self, item: GenerationEvent | BaseException) -> None:
        """From the model's thread."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def cancel(self) -> None:
        """Stop at the next token (idempotent)."""
        self.cancelled.set()

    async def events(self) -> AsyncGenerator[GenerationEvent, None]:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            # Finished, failed or the consumer went away: its sequence leaves the batch.
            self.cancel()


class LlamaCppModel(Admitted):
    """One loaded GGUF model and the engine that generates for all its requests at once."""

    def __init__(
        self,
        llm: Any,
        facts: GgufFacts,
        *,
        slots: int,
        max_queue: int,
        threads: int = 0,
        stats: EngineStats | None = None,
        queue_wait: Callable[[float], None] = lambda s: None,
        rng: random.Random | None = None,
        prompt_store: PromptStore | None = None,
    ):
        self._llm = llm
        self.facts = facts
        self.slots = slots
        self._prompts = PromptRenderer(llm, facts.chat_template)
        self.offer = replace(facts.offer, capabilities=_capabilities(facts, slots))
        self._logprobs = LogprobReader(llm, lambda token: bytes(llm.detokenize([token])))
        self._rng = rng or random.Random()
        self._queue_wait = queue_wait
        self._admission = Admission(max_queue, slots=slots, model=self.offer.model)
        self._engine = BatchEngine(
            llm,
            slots=slots,
            context_per_slot=self.offer.context_length,
            threads=threads,
            stats=stats,
            prompt_store=prompt_store,
        )

    async def start(self, request: GenerationRequest) -> list[LlamaCppGeneration]:
        """One generation per choice, each holding a slot of its own; they start together once all have
        one, so the engine reads the prompt once for all of them."""
        self.offer.capabilities.require(request.needs, self.offer.model)
        plan = PLAIN_TEXT
        if request.tool_choice.mode != "none" or request.response_format.structured:
            # Off the event loop: a large schema takes a while to turn into a grammar.
            plan = await asyncio.to_thread(plan_output, request, self._prompts.native_tools)
        prompt_tokens = await asyncio.to_thread(self._prompts.render, request, self.offer.model)
        max_tokens = self._check_context(len(prompt_tokens), request.sampling.max_tokens)
        sampling = request.sampling
        seed = sampling.seed if sampling.seed is not None else self._rng.getrandbits(31)
        logprobs = self._logprob_reader(request.top_logprobs) if request.logprobs else None
        generations: list[LlamaCppGeneration] = []
        jobs: list[Job] = []
        try:
            for choice in range(request.n):
                vocab = self._llm._model.vocab
                if plan.grammar is None:
                    sampler = SequenceSampler(sampling, seed + choice, vocab)
                else:  # grammars compile on a thread: a large schema takes a while
                    sampler = await asyncio.to_thread(
                        SequenceSampler, sampling, seed + choice, vocab, grammar=plan.grammar
                    )
                generation, job = await self._admit(prompt_tokens, max_tokens, sampler, plan, sampling.stop, logprobs)
                generations.append(generation)
                jobs.append(job)
        except BaseException:
            for job in jobs:  # never submitted: their slots are given back here
                job.sampler.close()
                job.done()
            raise
        self._engine.submit(*jobs)
        return generations

    async def _admit(
        self,
        prompt_tokens: list[int],
        max_tokens: int,
        sampler: SequenceSampler,
        plan: OutputPlan,
        stops: tuple[str, ...],
        logprobs: Callable[[Any, int, int], TokenLogprob] | None,
    ) -> tuple[LlamaCppGeneration, Job]:
        arrived = time.monotonic()
        try:
            await self._admission.acquire()
        except BaseException:
            sampler.close()
            raise
        started = time.monotonic()
        self._queue_wait(started - arrived)
        loop = asyncio.get_running_loop()
        generation = LlamaCppGeneration(prompt_tokens, loop, plan)

        def done() -> None:  # on the engine's thread: the slot is free again, however the job ended
            loop.call_soon_threadsafe(self._admission.release, time.monotonic() - started)

        job = Job(
            prompt=prompt_tokens,
            sampler=sampler,
            max_tokens=max_tokens,
            stops=stops,
            cancelled=generation.cancelled,
            emit=generation.emit,
            done=done,
            logprobs=logprobs,
        )
        return generation, job

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Refused: a generation model makes no embeddings (a 400 naming ``embeddings``)."""
        self.offer.capabilities.require(request.needs, self.offer.model)
        raise AssertionError("a generation model's capabilities never include embeddings")

    def _logprob_reader(self, top: int) -> Callable[[Any, int, int], TokenLogprob]:
        reader = self._logprobs

        def read(ctx: Any, index: int, token: int) -> TokenLogprob:
            return reader.read(ctx, index, token, top)

        return read

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.close)
        self._llm.close()

    def _check_context(self, prompt_tokens: int, max_tokens: int | None) -> int:
        n_ctx = self.offer.context_length
        wanted = max_tokens if max_tokens is not None else 1
        if prompt_tokens + wanted > n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the prompt, {wanted} for the "
                "completion). Please reduce the length of the prompt or the completion.",
                param="messages",
            )
        return max_tokens if max_tokens is not None else n_ctx - prompt_tokens


def _capabilities(facts: GgufFacts, slots: int) -> Capabilities:
    """Grammars and logits are always there; tools need a chat template (any: a grammar forces the shape)."""
    chat = facts.chat_template is not None
    return Capabilities(tools=chat, structured_output=chat, logprobs=True, max_n=slots)
