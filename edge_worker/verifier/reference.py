"""The reference model: one GGUF file, pinned by digest, that scores answers in one prefill.

Scoring is teacher forcing: the prompt and the worker's completion are read
in one pass, and the logits before each completion token say how likely the
reference found it. The answer's own ids are scored (re-tokenizing the text
would split it differently now and then and look like a cheat), once they
are known to spell what the client was sent.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge_worker.runtimes.llama_cpp.catalog import GgufFacts
from edge_worker.runtimes.llama_cpp.engine import new_context
from edge_worker.runtimes.llama_cpp.model import load_llama
from edge_worker.runtimes.llama_cpp.output_plan import plan_output
from edge_worker.runtimes.llama_cpp.prompt import PromptRenderer
from edge_worker.runtimes.llama_cpp.prompt_store import common_prefix
from edge_worker.verifier.delivery import delivered
from edge_worker.verifier.grammar_mask import GrammarMask
from edge_worker.verifier.scoring import Tally
from routing.errors import Busy, ContextLengthExceeded, InferCDNError
from routing.openai_requests import GenerationRequest, parse_chat_request, parse_completion_request
from routing.verification import Score, ScoreRequest

BATCH_TOKENS = 512


class Reference:
    """Blocking: call ``score`` from a thread; calls are serialised (one llama.cpp context)."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int = 0,
        context_length: int = 0,
        max_context: int = 8192,
        reuse_prompts: bool = True,
        gpu_layers: int = 0,
    ):
        import llama_cpp as lc

        self._lc = lc
        llm, facts = load_llama(
            path.expanduser(),
            context_length=context_length,
            threads=threads,
            max_context=max_context,
            gpu_layers=gpu_layers,
        )
        self._llm = llm
        self.facts: GgufFacts = facts
        self._prompts = PromptRenderer(llm, facts.chat_template)
        # No flash attention: its kernel in one long prefill put an honest greedy token 1.01 nats below the
        # reference's choice (the worker, decoding token by token, and a context without it agree on it).
        self._ctx = new_context(
            llm,
            n_ctx=facts.offer.context_length,
            batch_tokens=BATCH_TOKENS,
            sequences=1,
            threads=threads,
            flash_attention=False,
        )
        self._memory = lc.llama_get_memory(self._ctx)
        self._vocab = llm._model.vocab
        self._n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self._batch = lc.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._lock = threading.Lock()
        # The tokens whose KV the context holds from the last check. Prompts share their chat template's
        # opening (a system prompt, often), which the next check need not read again: on this CPU that
        # opening was about half of what a check read.
        self._reuse = reuse_prompts
        self._held: list[int] = []
        self.tokens_read = 0  # what its checks have decoded, over its life
        self._closed = False

    @property
    def checking(self) -> bool:
        """A check is running (``close`` waits for it)."""
        return self._lock.locked()

    @property
    def sha256(self) -> str:
        return self.facts.offer.sha256

    def score(self, job: ScoreRequest) -> Score:
        request = _parsed(job.request)
        with self._lock:
            if self._closed:
                raise Busy("The verifier is shutting down.")
            prompt_matches = tuple(self._prompts.render(request, self.facts.offer.model)) == job.prompt
            text_matches = delivered(self.detokenize(job.completion), job, request)
            targets = list(job.completion) + ([job.end_token] if job.end_token is not None else [])
            sampling = request.sampling
            tally = Tally(sampling.temperature, sampling.top_p, sampling.frequency_penalty, sampling.presence_penalty)
            grammar = self._grammar_of(request)
            try:
                if targets:
                    self._teacher_force(list(job.prompt), targets, tally, grammar)
            finally:
                if grammar is not None:
                    grammar.close()
        largest = tally.largest()
        return Score(
            prompt_matches=prompt_matches,
            text_matches=text_matches,
            tokens=len(targets),
            max_gap=largest[0][1] if largest else 0.0,
            max_gap_at=largest[0][0] if largest else 0,
            largest_gaps=largest,
            z=tally.z,
            greedy=tally.greedy,
        )

    def _grammar_of(self, request: GenerationRequest) -> GrammarMask | None:
        """The grammar the worker sampled this answer under, as the worker builds it (None: none)."""
        grammar = plan_output(request, self._prompts.native_tools).grammar
        return None if grammar is None else GrammarMask(self._lc, self._vocab, grammar, self._n_vocab)

    def _teacher_force(self, prompt: list[int], targets: list[int], tally: Tally, grammar: GrammarMask | None) -> None:
        """Read prompt + targets (all but the last: nothing follows it) and tally each target's logits row."""
        lc, batch = self._lc, self._batch
        sequence = prompt + targets[:-1]
        if not prompt or len(sequence) > self.facts.offer.context_length:
            raise ContextLengthExceeded("the answer does not fit the verifier's context")
        first_row = len(prompt) - 1  # the logits after position i predict token i + 1
        # Kept: the part of the prompt this context read last time, up to the first row whose logits are wanted
        # (the cache holds keys and values, not logits).
        kept = min(common_prefix(self._held, sequence), first_row) if self._reuse else 0
        self._held = []  # until this decode has succeeded
        if not kept or not lc.llama_memory_seq_rm(self._memory, 0, kept, -1):
            kept = 0
            lc.llama_memory_clear(self._memory, True)
        for start in range(kept, len(sequence), BATCH_TOKENS):
            chunk = sequence[start : start + BATCH_TOKENS]
            batch.n_tokens = len(chunk)
            rows: list[tuple[int, int]] = []  # (batch index, target index)
            for i, token in enumerate(chunk):
                position = start + i
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
                batch.seq_id[i][0] = 0
                wanted = position >= first_row
                batch.logits[i] = wanted
                if wanted:
                    rows.append((i, position - first_row))
            if lc.llama_decode(self._ctx, batch) != 0:
                raise InferCDNError("the verifier's decode failed")
            self.tokens_read += len(chunk)
            for index, target in rows:
                allowed = grammar.allowed() if grammar is not None else None
                tally.add(self._row(index), targets[target], allowed)
                if grammar is not None:
                    grammar.chose(targets[target], allowed)
        self._held = sequence

    def _row(self, index: int) -> np.ndarray:
        pointer = self._lc.llama_get_logits_ith(self._ctx, index)
        array = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float * self._n_vocab)).contents
        return np.frombuffer(array, dtype=np.float32).copy()

    @property
    def end_of_text(self) -> int:
        """The model's end-of-sequence token."""
        token: int = self._llm.token_eos()
        return token

    def detokenize(self, ids: tuple[int, ...]) -> str:
        raw: bytes = self._llm.detokenize(list(ids))
        return raw.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Free the model, once no check is running (freeing it under one crashed the process)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lc.llama_batch_free(self._batch)
            self._lc.llama_free(self._ctx)
            self._llm.close()


def _parsed(body: dict[str, Any]) -> GenerationRequest:
    parse = parse_chat_request if "messages" in body else parse_completion_request
    return parse(body)  # of n > 1 choices, the gateway sends one: each is its own draw from the same prompt
