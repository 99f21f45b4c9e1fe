"""Log-probabilities of sampled tokens, read from the logits llama.cpp computed for them.

The probabilities are the model's own (a softmax over the raw logits), as
OpenAI reports them: before temperature, top-p or a grammar narrow the draw.
Only sequences that asked pay for this, on the engine's thread, one numpy
pass over the vocabulary per token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Alternative:
    text: str
    raw: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token: its own logprob and the ``top`` most likely tokens in its place."""

    chosen: Alternative
    top: tuple[Alternative, ...]


class LogprobReader:
    def __init__(self, llm: Any, piece_of: Callable[[int], bytes]):
        import llama_cpp as lc

        self._lc = lc
        self._n_vocab = lc.llama_vocab_n_tokens(llm._model.vocab)
        self._piece_of = piece_of

    def read(self, ctx: Any, index: int, token: int, top: int) -> TokenLogprob:
        """For the token sampled from the logits at ``index`` of the last batch; ``top`` alternatives."""
        logits = np.ctypeslib.as_array(self._lc.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,))
        # log-softmax of the few tokens reported only: float32 over the vocabulary, no copies.
        peak = float(logits.max())
        log_total = peak + math.log(float(np.exp(logits - peak).sum()))
        best: list[int] = []
        if top:
            best = sorted(np.argpartition(logits, -top)[-top:].tolist(), key=lambda t: -logits[t])
        chosen = self._alternative(token, float(logits[token]) - log_total)
        return TokenLogprob(chosen, tuple(self._alternative(t, float(logits[t]) - log_total) for t in best))

    def _alternative(self, token: int, logprob: float) -> Alternative:
        raw = self._piece_of(token)
        return Alternative(raw.decode("utf-8", errors="replace"), raw, logprob)
