"""Per-key token budgets kept in step with the usage ledger (the rules are in routing/budget.py).

At start, and every ``REFRESH_S`` after, each budgeted key's spending in the current UTC day and
month is read from the ledger's hourly rollups (periods start on the hour, so the sums are exact):
a restart forgets nothing, and gateways that share a PostgreSQL ledger see each other's spending.
"""

from __future__ import annotations

import asyncio
import time

from gateway.keys import ApiKey
from gateway.ledger.store import LedgerStore
from routing.budget import PERIODS, BudgetBook, period_bounds

REFRESH_S = 30.0


async def observe_ledger(book: BudgetBook, keys: tuple[ApiKey, ...], store: LedgerStore, wall: float) -> None:
    for period in PERIODS:
        budgeted = [k for k in keys if k.budget.limit(period)]
        if not budgeted:
            continue
        starts = int(period_bounds(period, wall)[0])
        spent = {row.group: row.prompt_tokens + row.completion_tokens for row in await store.usage("key", starts)}
        for key in budgeted:
            book.observe(key.id, period, spent.get(key.id, 0), wall)


async def keep_in_step(book: BudgetBook, keys: tuple[ApiKey, ...], store: LedgerStore) -> None:
    while True:
        await asyncio.sleep(REFRESH_S)
        await observe_ledger(book, keys, store, time.time())
