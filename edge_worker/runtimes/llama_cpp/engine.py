"""Continuous batching over one llama.cpp context: many sequences, one decode loop per model.

Each admitted request gets a slot (a KV-cache sequence id). Every step builds
one ``llama_batch``: the next token of every sequence that is generating,
then chunks of prompts still being read, so a long prompt is fed over
several steps instead of freezing everyone else's stream. One
``llama_decode`` advances them all; each sequence then samples from its own
logits with its own sampler. Finished or cancelled sequences leave between
steps, and new ones join.

A slot keeps the KV of what it last held. A new request takes the free slot
whose cached tokens share the longest prefix with its prompt and reads only
the rest (the second turn of a chat does not pay for the first again); the
reused count is reported as ``cached_tokens``. What a slot gives up is copied
to RAM first (``prompt_store.py``), so a chat whose slot went to someone else
in the meantime gets its KV put back instead of reading its history again.

A job whose prompt another job is still reading (the choices of an ``n > 1``
request, or the same prompt sent twice at once) follows it instead of reading
it again: when the leader's prompt is in, the follower samples its first token
from the leader's logits and gets a copy of the leader's KV (a whole cache
stream, copied by llama.cpp before the next decode), then goes its own way.

The loop runs on its own thread (llama.cpp contexts are not thread-safe);
events cross to the event loop through each job's ``emit``.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_worker.runtimes.llama_cpp.events import Finished, GenerationEvent, TextDelta
from edge_worker.runtimes.llama_cpp.logprobs import TokenLogprob
from edge_worker.runtimes.llama_cpp.prompt_store import PromptStore, SavedPrompt, common_prefix
from edge_worker.runtimes.llama_cpp.sampler import SequenceSampler
from edge_worker.runtimes.llama_cpp.stop_scanner import StopScanner
from routing.errors import InferCDNError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One request's generation, as the decode loop sees it."""

    prompt: list[int]
    sampler: SequenceSampler
    max_tokens: int
    stops: tuple[str, ...]
    cancelled: threading.Event
    emit: Callable[[GenerationEvent | BaseException], None]
    done: Callable[[], None]  # told once when the job leaves its slot, however it ends
    # Where the request asked for logprobs: reads them for (context, logits index, token).
    logprobs: Callable[[Any, int, int], TokenLogprob] | None = None
    fed: int = 0  # tokens of this sequence in the KV cache
    cached: int = 0  # of the prompt, reused from the slot's cache
    next_token: int | None = None  # sampled, to be fed at the next step
    produced: int = 0
    sampled: list[int] = field(default_factory=list)  # the produced tokens' ids
    end_token: int | None = None
    unreported: int = 0  # produced tokens whose text is still held back
    unreported_logprobs: list[TokenLogprob] = field(default_factory=list)
    leader: _Slot | None = None  # the slot reading this job's prompt for it, while it does
    followers: list[_Slot] = field(default_factory=list)  # the slots waiting for this job's prompt
    scanner: StopScanner = field(init=False)
    decoder: Any = field(init=False)

    def __post_init__(self) -> None:
        self.scanner = StopScanner(self.stops)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")


@dataclass(slots=True)
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # the tokens its KV holds, positions 0..n-1
    job: Job | None = None
    last_used: float = 0.0


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Where the loop reports what it did (metrics); called from its thread."""

    batch_tokens: Callable[[int], None] = lambda n: None
    cached_tokens: Callable[[int], None] = lambda n: None
    restored_tokens: Callable[[int], None] = lambda n: None  # of those, put back from RAM
    saved_bytes: Callable[[int], None] = lambda n: None  # what the RAM copies hold now


class BatchEngine:
    def __init__(
        self,
        llm: Any,
        *,
        slots: int,
        context_per_slot: int,
        threads: int,
        batch_tokens: int = 512,
        prefill_chunk: int = 128,
        stats: EngineStats | None = None,
        prompt_store: PromptStore | None = None,
    ):
        import llama_cpp as lc

        self._lc = lc
        self._llm = llm
        self.context_per_slot = context_per_slot
        self._batch_tokens = batch_tokens
        self._prefill_chunk = prefill_chunk
        self._stats = stats or EngineStats()
        self._store = prompt_store
        self._ctx = new_context(
            llm, n_ctx=slots * context_per_slot, batch_tokens=batch_tokens, sequences=slots, threads=threads
        )
        self._memory = lc.llama_get_memory(self._ctx)
        self._vocab = llm._model.vocab
        self._batch = lc.llama_batch_init(batch_tokens, 0, 1)
        self._slots = [_Slot(seq) for seq in range(slots)]
        self._incoming: queue.SimpleQueue[tuple[Job, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self._thread.start()

    def submit(self, *jobs: Job) -> None:
        """Hand over admitted jobs, placed together (never more than there are slots: admission sees to it)."""
        self._incoming.put(jobs)
        self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._lc.llama_batch_free(self._batch)
        self._lc.llama_free(self._ctx)

    # The loop, on its own thread.

    def _run(self) -> None:
        while not self._stopping:
            self._take_incoming()
            self._drop_cancelled()
            active = [s for s in self._slots if s.job is not None]
            if not active:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self._step(active)
            except Exception as exc:  # a failed decode: every job in it fails, the engine goes on
                log.exception("decode step failed")
                for slot in active:
                    self._finish(slot, InferCDNError(f"generation failed: {type(exc).__name__}"))
                    self._forget(slot)
        for slot in self._slots:
            if slot.job is not None:
                self._finish(slot, InferCDNError("the worker is shutting down"))

    def _take_incoming(self) -> None:
        while True:
            try:
                jobs = self._incoming.get_nowait()
            except queue.Empty:
                return
            for job in jobs:
                self._place(job)

    def _place(self, job: Job) -> None:
        free = [s for s in self._slots if s.job is None]
        leader = next((s for s in self._slots if s.job is not None and _reads_prompt_of(s.job, job)), None)
        if leader is not None and leader.job is not None:
            # Its cache is replaced by the leader's: the free slot whose cache is worth least.
            slot = min(free, key=lambda s: (len(s.cached), s.last_used))
            slot.job, job.leader = job, leader
            leader.job.followers.append(slot)
            return
        # The free slot sharing the longest prefix with the prompt; else the one idle longest.
        slot = max(free, key=lambda s: (common_prefix(s.cached, job.prompt), -s.last_used))
        if self._store is not None:
            saved, shared = self._store.best(job.prompt)
            if saved is not None and shared >= common_prefix(slot.cached, job.prompt) + self._store.min_tokens:
                slot = min(free, key=lambda s: s.last_used)
                if self._restore(slot, saved):
                    self._claim(slot, job)
                    self._stats.restored_tokens(job.cached)
                    return
        self._claim(slot, job)

    def _claim(self, slot: _Slot, job: Job) -> None:
        """``job`` reads its prompt in ``slot``, after what the slot's cache already holds of it."""
        # At least the prompt's last token is read again: its logits give the first new token.
        reuse = min(common_prefix(slot.cached, job.prompt), len(job.prompt) - 1)
        self._save(slot, keeping=reuse)
        self._lc.llama_memory_seq_rm(self._memory, slot.seq, reuse, -1)
        slot.cached = job.prompt[:reuse]
        job.fed = job.cached = reuse
        job.leader = None
        slot.job = job
        if reuse:
            self._stats.cached_tokens(reuse)

    def _save(self, slot: _Slot, *, keeping: int) -> None:
        """Copy the slot's KV to RAM if what it is about to lose (all after ``keeping``) is worth keeping."""
        store = self._store
        if store is None or len(slot.cached) - keeping < store.min_tokens or not store.worth_keeping(slot.cached):
            return
        lc = self._lc
        size = lc.llama_state_seq_get_size(self._ctx, slot.seq)
        if not 0 < size <= store.max_bytes:
            return
        state = (ctypes.c_uint8 * size)()
        written = lc.llama_state_seq_get_data(self._ctx, state, size, slot.seq)
        if written:
            store.put(SavedPrompt(tuple(slot.cached), state, written))
            self._stats.saved_bytes(store.bytes_used)

    def _restore(self, slot: _Slot, saved: SavedPrompt) -> bool:
        """Put a saved KV into ``slot`` (what it held goes to RAM first, if worth it); False if it would not go."""
        self._save(slot, keeping=0)
        lc = self._lc
        lc.llama_memory_seq_rm(self._memory, slot.seq, 0, -1)
        if lc.llama_state_seq_set_data(self._ctx, saved.state, saved.size, slot.seq):
            slot.cached = list(saved.tokens)
            return True
        lc.llama_memory_seq_rm(self._memory, slot.seq, 0, -1)  # (a partial restore is no use)
        slot.cached = []
        return False

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                self._release(slot)

    def _step(self, active: list[_Slot]) -> None:
        batch = self._batch
        batch.n_tokens = 0
        sampled_at: list[tuple[_Slot, int]] = []
        for slot in active:  # every generating sequence advances by one token
            job = slot.job
            if job is not None and job.next_token is not None:
                sampled_at.append((slot, self._add(slot.seq, job.next_token, job.fed, logits=True)))
                slot.cached.append(job.next_token)
                job.fed += 1
                job.next_token = None
        generating = len(sampled_at)
        room = self._batch_tokens - generating
        chunk = self._prefill_chunk if generating else self._batch_tokens
        for slot in active:  # then prompts, in chunks, so running streams keep flowing
            job = slot.job
            if job is None or job.leader is not None or job.fed >= len(job.prompt) or room <= 0:
                continue
            take = job.prompt[job.fed : job.fed + min(chunk, room)]
            for offset, token in enumerate(take):
                last = job.fed + offset == len(job.prompt) - 1
                index = self._add(slot.seq, token, job.fed + offset, logits=last)
                if last:
                    sampled_at.append((slot, index))
            slot.cached.extend(take)
            job.fed += len(take)
            room -= len(take)
        if batch.n_tokens == 0:
            return
        self._stats.batch_tokens(batch.n_tokens)
        status = self._lc.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        for slot, index in sampled_at:
            job = slot.job
            if job is None:
                continue
            # Followers first: the leader may finish at its first token and give its slot back.
            followers, job.followers = job.followers, []
            for follower in followers:
                self._take_over_prompt(slot, follower)
            for taker in (slot, *followers):
                if taker.job is not None:
                    self._sample(taker, taker.job, index)

    def _sample(self, slot: _Slot, job: Job, index: int) -> None:
        token = job.sampler.sample(self._ctx, index)
        # Now or never: the next decode overwrites these logits.
        logprob = job.logprobs(self._ctx, index, token) if job.logprobs is not None else None
        self._on_token(slot, job, token, logprob)

    def _take_over_prompt(self, leader: _Slot, follower: _Slot) -> None:
        """The leader's prompt is in its KV: the follower gets a copy, as if it had read it itself."""
        job, lead = follower.job, leader.job
        if job is None or lead is None:
            return
        # Across cache streams only whole streams copy; the leader's holds exactly the prompt now.
        self._save(follower, keeping=0)
        self._lc.llama_memory_seq_cp(self._memory, leader.seq, follower.seq, -1, -1)
        follower.cached = list(leader.cached)
        job.fed, job.cached, job.leader = lead.fed, lead.cached, None  # the prompt counts once, as read
        self._stats.cached_tokens(len(job.prompt))

    def _add(self, seq: int, token: int, position: int, *, logits: bool) -> int:
        batch = self._batch
        i: int = batch.n_tokens
        batch.token[i] = token
        batch.pos[i] = position
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits
        batch.n_tokens = i + 1
        return i

    def _on_token(self, slot: _Slot, job: Job, token: int, logprob: TokenLogprob | None) -> None:
        if self._lc.llama_vocab_is_eog(self._vocab, token):
            job.end_token = token
            self._finish(slot, "stop")
            return
        job.produced += 1
        job.sampled.append(token)
        job.unreported += 1
        if logprob is not None:
            job.unreported_logprobs.append(logprob)
        piece, stopped = job.scanner.feed(job.decoder.decode(self._llm.detokenize([token])))
        if piece:
            self._emit_text(job, piece)
        if stopped:
            self._finish(slot, "stop")
        elif job.produced >= job.max_tokens or job.fed + 1 >= self.context_per_slot:
            self._finish(slot, "length")
        else:
            job.next_token = token

    def _finish(self, slot: _Slot, end: str | BaseException) -> None:
        job = slot.job
        if job is None:
            return
        last: GenerationEvent | BaseException = (
            end
            if isinstance(end, BaseException)
            else Finished(
                end,
                len(job.prompt),
                job.produced,
                cached_tokens=job.cached,
                completion_ids=tuple(job.sampled),
                end_token=job.end_token,
            )
        )
        if end == "length":
            piece, _ = job.scanner.feed(job.decoder.decode(b"", final=True))
            tail = piece + job.scanner.flush()
            if tail:
                self._emit_text(job, tail)
        # The slot is given back before the last event goes out: once a client has its answer, the
        # worker's load no longer counts it (a probe right after must not see it in flight).
        self._release(slot)
        job.emit(last)

    def _emit_text(self, job: Job, text: str) -> None:
        job.emit(TextDelta(text, tokens=job.unreported, logprobs=tuple(job.unreported_logprobs)))
        job.unreported = 0
        job.unreported_logprobs.clear()

    def _release(self, slot: _Slot) -> None:
        job = slot.job
        if job is None:
            return
        slot.job = None
        if job.leader is not None and job.leader.job is not None:
            job.leader.job.followers.remove(slot)
        if job.followers:  # it leaves before its prompt was in: the first follower reads it instead
            heir, *rest = job.followers
            if heir.job is not None:
                self._claim(heir, heir.job)
                heir.job.followers = rest
                for other in rest:
                    if other.job is not None:
                        other.job.leader = heir
        slot.last_used = time.monotonic()
        job.sampler.close()
        job.done()

    def _forget(self, slot: _Slot) -> None:
        """Its KV is not trusted after a failed step: drop it."""
        self._lc.llama_memory_seq_rm(self._memory, slot.seq, 0, -1)
        slot.cached = []


def new_context(
    llm: Any, *, n_ctx: int, batch_tokens: int, sequences: int, threads: int, flash_attention: bool | None = None
) -> Any:
    """A llama.cpp context of the loaded model's own (blocking); ``flash_attention`` None: llama.cpp decides."""
    import llama_cpp as lc

    params = lc.llama_context_default_params()
    if flash_attention is not None:
        params.flash_attn_type = (
            lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = batch_tokens
    params.n_seq_max = sequences
    # A cache stream per sequence: its attention spans its own cells only, so what it computes does
    # not depend on what else is in the batch (one shared cache changed greedy text).
    params.kv_unified = False
    if threads:
        params.n_threads = params.n_threads_batch = threads
    params.no_perf = True
    ctx = lc.llama_init_from_model(llm._model.model, params)
    if not ctx:
        raise InferCDNError("llama.cpp could not create a context")
    return ctx


def _reads_prompt_of(lead: Job, job: Job) -> bool:
    """True when ``lead`` is reading the prompt ``job`` has, and ``job`` can wait for it."""
    return lead.leader is None and lead.fed < len(lead.prompt) and lead.prompt == job.prompt
