"""One sequence's sampler: a llama.cpp sampler chain built from the request's settings.

Each sequence owns its chain (penalties, then greedy, or top-p, temperature
and a seeded draw), so what it samples depends on its own logits, history
and seed only, never on what else is in the batch.

A grammar (structured output, forced tool calls) is checked the way
llama.cpp's own server does it: the chain draws as usual, and only if the
grammar refuses that token is the whole vocabulary filtered through the
grammar and drawn from again. Filtering 49k candidates for every token
would stall the batch's other sequences, since all of them wait for this
thread; most drawn tokens pass. A refused draw is drawn again from the
``SHORTLIST`` likeliest tokens the grammar allows (exact for greedy; for
sampling it leaves out only the far tail), and from the whole vocabulary
only when the grammar allows none of them.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

from routing.errors import InvalidRequest
from routing.openai_requests import Sampling

PENALTY_LAST_N = 64  # llama-cpp-python's default window (last_n_tokens_size)
# llama.cpp's llama_token_data, as a numpy record: the whole vocabulary is filled in one pass.
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
SHORTLIST = 256


class SequenceSampler:
    def __init__(self, sampling: Sampling, seed: int, vocab: Any, *, grammar: str | None = None):
        import llama_cpp as lc

        self._lc = lc
        self._grammar: Any = None
        self._n_vocab = lc.llama_vocab_n_tokens(vocab)
        if grammar is not None:
            self._grammar = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not self._grammar:
                raise InvalidRequest("The schema could not be turned into a grammar.", param="response_format")
            self._one: Any = (lc.llama_token_data * 1)()
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if sampling.frequency_penalty or sampling.presence_penalty:
            penalties = lc.llama_sampler_init_penalties(
                self._n_vocab, PENALTY_LAST_N, 1.0, sampling.frequency_penalty, sampling.presence_penalty
            )
            lc.llama_sampler_chain_add(chain, penalties)
        if sampling.temperature <= 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        else:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(sampling.top_p, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(sampling.temperature))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed))
        self._chain: Any = chain

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits at ``index`` of the last decoded batch (and accept it)."""
        token: int = self._lc.llama_sampler_sample(self._chain, ctx, index)
        if self._grammar is None:
            return token
        if not self._grammar_allows(token):
            token = self._draw_within_grammar(ctx, index)
        self._lc.llama_sampler_accept(self._grammar, token)
        return token

    def _grammar_allows(self, token: int) -> bool:
        lc = self._lc
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        single = lc.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        lc.llama_sampler_apply(self._grammar, ctypes.byref(single))
        return not math.isinf(self._one[0].logit)

    def _draw_within_grammar(self, ctx: Any, index: int) -> int:
        logits = np.ctypeslib.as_array(self._lc.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,))
        likeliest = np.argpartition(logits, -SHORTLIST)[-SHORTLIST:]
        token = self._draw_from(likeliest.astype(np.int32), logits[likeliest])
        if token is None:
            token = self._draw_from(np.arange(self._n_vocab, dtype=np.int32), logits)
        if token is None:  # the grammar allows nothing: it cannot happen, as a grammar always allows EOS or more
            raise RuntimeError("the grammar allows no token")
        return token

    def _draw_from(self, ids: Any, logits: Any) -> int | None:
        """Filter these candidates through the grammar, then draw with the chain; None if none is allowed."""
        lc = self._lc
        candidates = np.empty(len(ids), dtype=TOKEN_DATA)
        candidates["id"], candidates["logit"], candidates["p"] = ids, logits, 0.0
        data = candidates.ctypes.data_as(ctypes.POINTER(lc.llama_token_data))
        array = lc.llama_token_data_array(data=data, size=len(ids), selected=-1, sorted=False)
        lc.llama_sampler_apply(self._grammar, ctypes.byref(array))
        if not np.isfinite(candidates["logit"][: array.size]).any():
            return None
        lc.llama_sampler_apply(self._chain, ctypes.byref(array))
        token: int = array.data[array.selected].id
        return token

    def close(self) -> None:
        if self._chain is not None:
            self._lc.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            self._lc.llama_sampler_free(self._grammar)
            self._grammar = None
