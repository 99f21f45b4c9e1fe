"""The RAM prompt store's bookkeeping: longest shared prefix wins, least recently used goes first, bytes bounded."""

from __future__ import annotations

from edge_worker.runtimes.llama_cpp.prompt_store import PromptStore, SavedPrompt


def saved(tokens: list[int], size: int = 100) -> SavedPrompt:
    return SavedPrompt(tuple(tokens), bytearray(size), size)


def test_the_entry_sharing_the_longest_prefix_is_found() -> None:
    store = PromptStore(1000, min_tokens=3)
    store.put(saved([1, 2, 3, 4, 5]))
    store.put(saved([1, 2, 9, 9, 9, 9]))
    entry, shared = store.best([1, 2, 3, 4, 7])
    assert entry is not None and entry.tokens == (1, 2, 3, 4, 5) and shared == 4
    assert store.best([8, 8, 8]) == (None, 0)


def test_the_least_recently_used_entry_goes_first_to_stay_within_the_budget() -> None:
    store = PromptStore(250, min_tokens=3)
    store.put(saved([1, 1, 1]))
    store.put(saved([2, 2, 2]))
    store.best([1, 1, 1])  # used: the other one is now the oldest
    store.put(saved([3, 3, 3]))
    assert store.best([2, 2, 2]) == (None, 0)
    assert store.best([1, 1, 1])[1] == 3 and store.best([3, 3, 3])[1] == 3
    assert store.bytes_used == 200 and len(store) == 2


def test_a_longer_copy_replaces_its_prefixes_and_short_or_oversized_ones_are_not_kept() -> None:
    store = PromptStore(250, min_tokens=3)
    store.put(saved([1, 2, 3]))
    store.put(saved([1, 2, 3, 4, 5]))  # the next turn of the same chat
    assert len(store) == 1 and store.bytes_used == 100
    assert not store.worth_keeping([1, 2, 3, 4, 5]) and not store.worth_keeping([7, 7])
    store.put(saved([7, 7]))  # too short: cheaper to read again
    store.put(saved([8, 8, 8], size=251))  # bigger than the whole budget
    assert len(store) == 1
