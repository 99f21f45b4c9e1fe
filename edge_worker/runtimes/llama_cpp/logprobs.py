"""Log-probabilities of sampled tokens, read from the logits llama.cpp computed for them.

The probabilities are the model's own (a softmax over the raw logits), as
OpenAI reports them: before temperature, top-p or a grammar narrow the draw.
Only sequences that asked pay for this, on the engine's thread, one numpy
pass over the vocabulary per token.
"""

from __future__ import annotations

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
        pointer = self._lc.llama_get_logits_ith(ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        peak = logits.max()
        logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
        best: list[int] = []
        if top:
            candidates = np.argpartition(-logprobs, top - 1)[:top]
            best = sorted(candidates.tolist(), key=lambda t: -logprobs[t])
        return TokenLogprob(self._alternative(token, logprobs), tuple(self._alternative(t, logprobs) for t in best))

    def _alternative(self, token: int, logprobs: Any) -> Alternative:
        raw = self._piece_of(token)
        return Alternative(raw.decode("utf-8", errors="replace"), raw, float(logprobs[token]))
