"""The llama.cpp runtime (llama-cpp-python), for consumer devices and CPUs.

A ``Llama`` is not thread-safe, so each loaded model has one generation
thread and an ``Admission`` queue in front of it. Tokens cross from that
thread to the event loop one by one; a consumer that goes away sets a flag
the thread checks between tokens, so a disconnected client stops its
generation within a token or two.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge_worker.runtimes.llama_cpp.admission import Admission
from edge_worker.runtimes.llama_cpp.catalog import GgufFacts, facts_from_metadata, trained_context
from edge_worker.runtimes.llama_cpp.events import Finished, GenerationEvent, TextDelta
from edge_worker.runtimes.llama_cpp.gguf import read_metadata
from edge_worker.runtimes.llama_cpp.stop_scanner import StopScanner
from routing.errors import ContextLengthExceeded, InferCDNError, InvalidRequest
from routing.openai_requests import GenerationRequest, Sampling

log = logging.getLogger(__name__)

_RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's "pick a random seed"


def load_llama(path: Path, *, context_length: int, threads: int, max_context: int) -> tuple[Any, GgufFacts]:
    """Load a GGUF file (blocking: call it from a thread)."""
    from llama_cpp import Llama

    metadata = read_metadata(path)
    n_ctx = context_length or min(trained_context(metadata) or max_context, max_context)
    llm = Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_threads=threads or None,
        n_batch=min(512, n_ctx),
        verbose=False,
    )
    return llm, facts_from_metadata(metadata, path, n_ctx)


class LlamaCppGeneration:
    """One admitted generation: events cross from the model's thread to the event loop through it.

    Building one starts nothing; ``LlamaCppModel.start`` submits its job at
    once, so the admission slot is handed back when the thread finishes,
    even if nobody reads the events.
    """

    def __init__(self, prompt_tokens: int, loop: asyncio.AbstractEventLoop):
        self.prompt_tokens = prompt_tokens
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
            # Finished, failed or the consumer went away: stop the thread.
            self.cancel()


class LlamaCppModel:
    """One loaded GGUF model and the thread that runs it."""

    def __init__(self, llm: Any, facts: GgufFacts, *, max_queue: int, rng: random.Random | None = None):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llm = llm
        self.facts = facts
        self.offer = facts.offer
        self._rng = rng or random.Random()
        self._admission = Admission(max_queue, model=self.offer.model)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{self.offer.model}")
        self._eos = llm.token_eos()
        self._formatter = None
        if facts.chat_template:
            self._formatter = Jinja2ChatFormatter(
                template=facts.chat_template,
                eos_token=llm._model.token_get_text(self._eos),
                bos_token=llm._model.token_get_text(llm.token_bos()),
                stop_token_ids=[self._eos],
            )

    @property
    def in_flight(self) -> int:
        return self._admission.running

    @property
    def queued(self) -> int:
        return self._admission.waiting

    async def start(self, request: GenerationRequest) -> LlamaCppGeneration:
        prompt_tokens = await asyncio.to_thread(self._tokenize, request)
        max_tokens = self._check_context(len(prompt_tokens), request.sampling.max_tokens)
        await self._admission.acquire()
        loop = asyncio.get_running_loop()
        generation = LlamaCppGeneration(len(prompt_tokens), loop)
        started = time.monotonic()
        try:
            job = self._executor.submit(self.generate_blocking, prompt_tokens, request.sampling, max_tokens, generation)
        except BaseException:
            self._admission.release(0.0)
            raise
        # The slot is held until the job returns, however its consumer fares.
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._admission.release, time.monotonic() - started))
        return generation

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._llm.close()

    def _tokenize(self, request: GenerationRequest) -> list[int]:
        # The tokenizer only reads the (immutable) vocabulary, so it may run
        # beside a generation; the context is what is not thread-safe.
        if request.messages is not None:
            if self._formatter is None:
                raise InferCDNError(f"The model '{self.offer.model}' has no chat template; use /v1/completions.")
            messages: Any = [{"role": m.role, "content": m.content} for m in request.messages]
            formatted = self._formatter(messages=messages)
            tokens: list[int] = self._llm.tokenize(
                formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
            )
            return tokens
        tokens = list(self._llm.tokenize((request.prompt or "").encode(), add_bos=True, special=False))
        if not tokens:
            # An empty prompt (OpenAI allows it) starts from BOS; llama.cpp cannot sample from nothing.
            bos = self._llm.token_bos()
            if bos < 0:
                raise InvalidRequest("'prompt' must not be empty for this model.", param="prompt")
            tokens = [bos]
        return tokens

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

    def generate_blocking(
        self, prompt: list[int], sampling: Sampling, max_tokens: int, generation: LlamaCppGeneration
    ) -> None:
        """The generation loop, on the model's thread; a failure reaches the consumer as an error."""
        try:
            self._generate(prompt, sampling, max_tokens, generation.cancelled, generation.emit)
        except Exception as exc:
            log.exception("generation failed")
            generation.emit(InferCDNError(f"generation failed: {type(exc).__name__}"))

    def _generate(
        self,
        prompt: list[int],
        sampling: Sampling,
        max_tokens: int,
        cancel: threading.Event,
        emit: Callable[[GenerationEvent], None],
    ) -> None:
        import llama_cpp

        llm = self._llm
        vocab = llm._model.vocab
        llm.set_seed(sampling.seed if sampling.seed is not None else self._rng.getrandbits(31))
        text = StopScanner(sampling.stop)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced = 0
        unreported = 0  # tokens whose text is still held back
        reason = "length"
        tokens = llm.generate(
            prompt,
            temp=sampling.temperature,
            top_p=sampling.top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
        )
        for token in tokens:
            if cancel.is_set():
                return
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "stop"
                break
            produced += 1
            unreported += 1
            piece, stopped = text.feed(decoder.decode(llm.detokenize([token])))
            if piece:
                emit(TextDelta(piece, tokens=unreported))
                unreported = 0
            if stopped:
                reason = "stop"
                break
            if produced >= max_tokens:
                break
        if reason == "length":
            piece, _ = text.feed(decoder.decode(b"", final=True))
            tail = piece + text.flush()
            if tail:
                emit(TextDelta(tail, tokens=unreported))
        emit(Finished(reason=reason, prompt_tokens=len(prompt), completion_tokens=produced))
