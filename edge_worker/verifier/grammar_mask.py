"""The tokens a request's grammar allows at each step, for the reference to score under it.

The worker samples a schema-constrained answer under a llama.cpp grammar
(``edge_worker.runtimes.llama_cpp.sampler``). The reference keeps its own copy
of that grammar, asks it which of the whole vocabulary it allows before each
token, and advances it by the token the worker chose. A token the grammar
refuses is never accepted into it (llama.cpp aborts on that); the answer is
flagged by it anyway, and the rest is scored without the grammar.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edge_worker.runtimes.llama_cpp.sampler import TOKEN_DATA
from routing.errors import InvalidRequest


class GrammarMask:
    def __init__(self, lc: Any, vocab: Any, grammar: str, n_vocab: int):
        self._lc = lc
        self._sampler: Any = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self._sampler:
            raise InvalidRequest("The schema could not be turned into a grammar.", param="response_format")
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._candidates = np.empty(n_vocab, dtype=TOKEN_DATA)
        self.broken = False  # a refused token was chosen: the grammar's state no longer follows the answer

    def allowed(self) -> np.ndarray | None:
        """Which token ids the grammar allows next (None once it no longer follows the answer)."""
        if self.broken:
            return None
        lc, candidates = self._lc, self._candidates
        candidates["id"], candidates["logit"], candidates["p"] = self._ids, 0.0, 0.0
        data = candidates.ctypes.data_as(ctypes.POINTER(lc.llama_token_data))
        array = lc.llama_token_data_array(data=data, size=len(candidates), selected=-1, sorted=False)
        lc.llama_sampler_apply(self._sampler, ctypes.byref(array))
        allowed = np.zeros(len(candidates), dtype=bool)
        kept = candidates[: array.size]
        allowed[kept["id"][np.isfinite(kept["logit"])]] = True
        return allowed

    def chose(self, token: int, allowed: np.ndarray | None) -> None:
        """The answer's next token: the grammar moves on by it, if it allowed it."""
        if allowed is None or not allowed[token]:
            self.broken = True
            return
        self._lc.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler is not None:
            self._lc.llama_sampler_free(self._sampler)
            self._sampler = None
