"""KV caches of prompts a slot had to give up, kept in RAM to be put back for a prompt that continues one.

A slot keeps the KV of what it last read, but only until another request
takes it. With more conversations than slots (the usual case for a worker
serving strangers), a chat's next turn finds its slot holding someone else's
prompt and would read its whole history again. So a slot's KV is copied out
(``llama_state_seq_get_data``) before it is overwritten, and the next prompt
that shares a longer prefix with a copy than with any free slot gets that
copy put back (``llama_state_seq_set_data``) and reads only the rest.
llama.cpp's own server does the same with ``--cache-ram``.

This module is the bookkeeping only (no llama.cpp here): entries by token
sequence, the least recently used dropped first to stay within a byte budget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MIN_TOKENS = 64  # a shorter prompt is cheaper to read again than to keep
DEFAULT_SHARE_OF_RAM = 16  # by default at most a sixteenth of the machine's memory …
DEFAULT_MAX_BYTES = 1 << 30  # … and at most 1 GiB


@dataclass(frozen=True, slots=True)
class SavedPrompt:
    tokens: tuple[int, ...]  # what the KV holds, positions 0..n-1
    state: Any  # llama.cpp's sequence state: a ctypes byte array
    size: int


def default_budget(ram_bytes: int) -> int:
    return min(DEFAULT_MAX_BYTES, ram_bytes // DEFAULT_SHARE_OF_RAM)


class PromptStore:
    """Saved prompt KV caches within ``max_bytes``; not thread-safe (the decode loop's thread owns it)."""

    def __init__(self, max_bytes: int, *, min_tokens: int = MIN_TOKENS):
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self.bytes_used = 0
        self._entries: OrderedDict[tuple[int, ...], SavedPrompt] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._entries)

    def worth_keeping(self, tokens: list[int] | tuple[int, ...]) -> bool:
        """Long enough to keep, and not kept already."""
        return len(tokens) >= self.min_tokens and tuple(tokens) not in self._entries

    def put(self, saved: SavedPrompt) -> None:
        if saved.size > self.max_bytes or len(saved.tokens) < self.min_tokens:
            return
        # A saved prefix of this one is worth nothing more: this one answers every prompt it would.
        for tokens in [t for t in self._entries if len(t) <= len(saved.tokens) and saved.tokens[: len(t)] == t]:
            self._drop(tokens)
        while self._entries and self.bytes_used + saved.size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[saved.tokens] = saved
        self.bytes_used += saved.size

    def best(self, prompt: list[int]) -> tuple[SavedPrompt | None, int]:
        """The entry sharing the longest prefix with ``prompt``, and how long that prefix is (marked as used)."""
        best: SavedPrompt | None = None
        shared = 0
        for saved in self._entries.values():
            n = common_prefix(saved.tokens, prompt)
            if n > shared:
                best, shared = saved, n
        if best is not None:
            self._entries.move_to_end(best.tokens)
        return best, shared

    def _drop(self, tokens: tuple[int, ...]) -> None:
        self.bytes_used -= self._entries.pop(tokens).size


def common_prefix(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
