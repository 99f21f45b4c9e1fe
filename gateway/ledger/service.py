"""The gateway's ledger: its store, its writer, its retention, opened from the config."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.ledger.entry import HOUR_S
from gateway.ledger.postgres_store import PostgresLedger
from gateway.ledger.sqlite_store import SqliteLedger
from gateway.ledger.store import LedgerStore
from gateway.ledger.writer import LedgerWriter
from gateway.metrics import GatewayMetrics

DAY_S = 86400
# How long an entry may wait for others to share its transaction, when no answer waits for it.
LINGER_S = 0.05


@dataclass(frozen=True, slots=True)
class Retention:
    raw_days: float
    rollup_days: float


async def open_store(target: str) -> LedgerStore:
    if target.startswith(("postgresql://", "postgres://")):
        return await PostgresLedger.open(target)
    return await SqliteLedger.open(target)


@dataclass(slots=True)
class Ledger:
    store: LedgerStore
    writer: LedgerWriter
    retention: Retention
    wait_s: float  # an answer's last bytes wait this long for its commit
    wall_clock: Callable[[], float] = time.time

    @classmethod
    async def open(
        cls, target: str, gateway: str, metrics: GatewayMetrics, retention: Retention, wait_s: float
    ) -> Ledger:
        store = await open_store(target)
        # Nobody waits for a commit: let each batch gather what comes in a moment (fewer, bigger transactions).
        linger_s = 0.0 if wait_s else LINGER_S
        return cls(store, LedgerWriter(store, gateway, metrics, linger_s=linger_s), retention, wait_s)

    async def prune_forever(self) -> None:
        while True:
            now = self.wall_clock()
            hourly_before = int((now - self.retention.rollup_days * DAY_S) // HOUR_S) * HOUR_S
            await self.store.prune(now - self.retention.raw_days * DAY_S, hourly_before)
            await asyncio.sleep(HOUR_S)

    async def close(self) -> None:
        await self.writer.drain()
        await self.store.close()
