"""One writer task per gateway: entries queue up, go to the store in batches, and each request learns
when its own entry is committed.

With ``ledger_wait_s`` set, a request waits for that commit before its last
bytes reach the client, so an answer the client has is never missing after a
crash. That wait is a group commit: whatever queued while a batch was being
written goes in the next one, so a busy gateway writes big batches, not one
transaction per request. By default nothing waits, and a batch lingers a
moment (``linger_s``) to gather more entries: fewer, bigger transactions.
A batch that fails is retried (the store is idempotent on entry id), never
dropped while the backlog is under ``max_pending``; past it, an entry is
refused, counted and logged, not held without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import get_args

from gateway.ledger.entry import LedgerEntry
from gateway.ledger.store import LedgerStore
from gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


# An entry's fields after its id, as a request leaves them: the writer numbers them when their batch forms
# (one warm loop a batch costs a fraction of the same steps run cold, once a request).
Unnumbered = tuple[str, float, str, str, str, str, int, int, int, int, float, float | None]
assert len(get_args(Unnumbered)) == len(LedgerEntry._fields) - 1
_REQUEST_ID = LedgerEntry._fields.index("request_id") - 1  # where an unnumbered entry has it
_entry_of = tuple.__new__  # a named tuple made from its values (its own ``__new__`` takes them one by one)


@dataclass(slots=True)
class LedgerWriter:
    store: LedgerStore
    gateway: str  # this gateway's public key: whose rows these are
    metrics: GatewayMetrics
    batch_size: int = 1024
    max_pending: int = 200_000
    retry_s: float = 0.5
    linger_s: float = 0.0  # a batch waits this long for company unless full (0: whatever queued goes now)
    _queue: deque[Unnumbered] = field(default_factory=deque)
    # Entry ids: this process's random prefix and a count, unique across gateways and restarts, and cheaper
    # than a uuid4 an entry.
    _id_prefix: str = field(default_factory=lambda: secrets.token_hex(12))
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Entries are numbered as they queue; one is committed once ``_committed`` reaches its number. Only a
    # caller that waits gets a future (a request under ``ledger_wait_s``, a report): none per request otherwise.
    _queued: int = 0
    _committed: int = 0
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def add(self, entry: Unnumbered) -> int:
        """Queue an entry, numbered when its batch forms; its ticket for ``committed`` (0 if refused: the
        backlog is full)."""
        if len(self._queue) >= self.max_pending:
            self.metrics.ledger_dropped.inc()
            log.error("ledger backlog full (%d): request %s is not recorded", self.max_pending, entry[_REQUEST_ID])
            return 0
        self._queue.append(entry)
        self._queued += 1
        self._wake.set()
        return self._queued

    async def committed(self, ticket: int) -> None:
        """Until the entry with this ticket (and every one queued before it) is committed."""
        if ticket <= self._committed:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ticket, done))
        await asyncio.shield(done)

    async def settled(self) -> None:
        """Until every entry queued so far is committed: a report read next includes them."""
        await self.committed(self._queued)

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            if self.linger_s and len(self._queue) < self.batch_size:
                await asyncio.sleep(self.linger_s)
            await self.flush_once()

    async def flush_once(self) -> None:
        """Write one batch of what is queued, retrying until it is in."""
        queue, prefix, ids = self._queue, self._id_prefix, self._ids
        # Numbered once a batch: a retry writes the same entry ids, which is what makes a retry harmless.
        batch = [
            _entry_of(LedgerEntry, (f"{prefix}{next(ids):08x}", *e))
            for e in (queue[i] for i in range(min(self.batch_size, len(queue))))
        ]
        if not batch:
            return
        self.metrics.ledger_pending.set(len(self._queue))
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self.store.write(batch, self.gateway)
                break
            except Exception as exc:  # any database failure: the batch waits and is retried
                self.metrics.ledger_errors.inc()
                log.warning("ledger write of %d entries failed (%s); retrying", len(batch), type(exc).__name__)
                await asyncio.sleep(self.retry_s)
        self.metrics.ledger_batch_seconds.observe(asyncio.get_running_loop().time() - started)
        self.metrics.ledger_entries.inc(len(batch))
        for _ in batch:
            self._queue.popleft()
        self._committed += len(batch)
        self.metrics.ledger_pending.set(len(self._queue))
        if self._waiters:
            waiting = []
            for ticket, done in self._waiters:
                if ticket > self._committed:
                    waiting.append((ticket, done))
                elif not done.done():
                    done.set_result(None)
            self._waiters = waiting

    async def drain(self) -> None:
        """At shutdown: everything queued goes in before the store closes."""
        while self._queue:
            await self.flush_once()
