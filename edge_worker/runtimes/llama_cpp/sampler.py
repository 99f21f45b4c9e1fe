"""One sequence's sampler: a llama.cpp sampler chain built from the request's settings.

Each sequence owns its chain (penalties, then greedy, or top-p, temperature
and a seeded draw), so what it samples depends on its own logits, history
and seed only, never on what else is in the batch. A grammar (structured
output, forced tool calls) goes first in the chain: only tokens it allows
are drawn from.
"""

from __future__ import annotations

from typing import Any

from routing.errors import InvalidRequest
from routing.openai_requests import Sampling

PENALTY_LAST_N = 64  # llama-cpp-python's default window (last_n_tokens_size)


class SequenceSampler:
    def __init__(self, sampling: Sampling, seed: int, *, grammar: str | None = None, vocab: Any = None):
        import llama_cpp as lc

        self._lc = lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if grammar is not None:
            constraint = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not constraint:
                lc.llama_sampler_free(chain)
                raise InvalidRequest("The schema could not be turned into a grammar.", param="response_format")
            lc.llama_sampler_chain_add(chain, constraint)
        if sampling.frequency_penalty or sampling.presence_penalty:
            penalties = lc.llama_sampler_init_penalties(
                PENALTY_LAST_N, 1.0, sampling.frequency_penalty, sampling.presence_penalty
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
        return token

    def close(self) -> None:
        if self._chain is not None:
            self._lc.llama_sampler_free(self._chain)
            self._chain = None
