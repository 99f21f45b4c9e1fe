"""How many sequences a model serves at once by default: what the CPU can feed and the KV cache can hold."""

from __future__ import annotations

import os

MAX_DEFAULT_SLOTS = 8
KV_BUDGET_BYTES = 2 << 30  # at most this much KV cache per model by default …
KV_BUDGET_SHARE_OF_RAM = 8  # … and at most an eighth of the machine's memory


def default_slots(*, cores: int, context_per_slot: int, kv_bytes_per_token: int, ram_bytes: int) -> int:
    """Two sequences per core (a batched step costs little more than a single one on CPU), up to
    eight, fewer if that many full-length sequences would not fit the KV budget; at least one."""
    slots = min(MAX_DEFAULT_SLOTS, max(1, 2 * cores))
    budget = min(KV_BUDGET_BYTES, ram_bytes // KV_BUDGET_SHARE_OF_RAM)
    while slots > 1 and slots * context_per_slot * kv_bytes_per_token > budget:
        slots -= 1
    return slots


def machine_ram_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
