"""The ledger's writer over a real SQLite store: who waits for which commit, and what a full backlog refuses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.ledger.entry import LedgerEntry
from gateway.ledger.service import open_store
from gateway.ledger.store import LedgerStore
from gateway.ledger.writer import LedgerWriter, Unnumbered
from gateway.metrics import GatewayMetrics
from routing.balancer import Balancer
from routing.fleet import Fleet
from tests.gateway.ledger.test_stores import entry
from tests.waiting import wait_until


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    opened = await open_store(str(tmp_path / "ledger.sqlite3"))
    yield opened
    await opened.close()


def writer_on(store: LedgerStore, **settings: int) -> LedgerWriter:
    return LedgerWriter(store, "gw", GatewayMetrics(Balancer(Fleet(), random.Random(0))), **settings)


async def requests_in(store: LedgerStore) -> int:
    return sum(row.requests for row in await store.usage("worker", 0))


async def test_a_ticket_is_done_once_its_batch_is_committed_and_not_before(store: LedgerStore) -> None:
    writer = writer_on(store, batch_size=2)
    tickets = [writer.add(entry()[1:]) for _ in range(3)]
    assert tickets == [1, 2, 3]
    second, third, everything = (
        asyncio.create_task(writer.committed(2)),
        asyncio.create_task(writer.committed(3)),
        asyncio.create_task(writer.settled()),
    )
    await asyncio.sleep(0)  # all three are waiting now
    assert not (second.done() or third.done() or everything.done())
    await writer.flush_once()  # the first two
    await wait_until(second.done)
    assert not third.done() and not everything.done()
    assert await requests_in(store) == 2
    await writer.flush_once()
    await asyncio.gather(third, everything)
    assert await requests_in(store) == 3
    await writer.committed(1)  # long since committed: returns at once


async def test_a_full_backlog_refuses_an_entry_counts_it_and_nobody_waits_for_it(store: LedgerStore) -> None:
    writer = writer_on(store, max_pending=2)
    assert [writer.add(entry()[1:]) for _ in range(3)] == [1, 2, 0]
    await writer.committed(0)  # the refused one: nothing to wait for
    assert writer.metrics.registry.get_sample_value("infercdn_gateway_ledger_dropped_total") == 1
    await writer.drain()
    assert await requests_in(store) == 2


@dataclass
class LostCommits:
    """The real store, whose first ``lose`` commits succeed but are never acknowledged (the connection drops
    after the commit): the writer cannot tell them from failures and writes the batch again."""

    store: LedgerStore
    lose: int

    async def write(self, entries: Sequence[LedgerEntry], gateway: str) -> int:
        written = await self.store.write(entries, gateway)
        if self.lose:
            self.lose -= 1
            raise ConnectionResetError("the commit's acknowledgement was lost")
        return written


def unnumbered(request_id: str) -> Unnumbered:
    """What a request leaves in the queue: an entry's fields after its id."""
    fields = entry(request_id=request_id)
    return fields[1:]


async def test_a_batch_written_again_after_a_lost_commit_counts_once(store: LedgerStore) -> None:
    """The writer numbers a request's entry when its batch forms, once: a retry writes the same entry ids."""
    lossy = LostCommits(store, lose=2)
    writer = LedgerWriter(lossy, "gw", writer_on(store).metrics, retry_s=0)  # type: ignore[arg-type]
    for n in range(5):
        writer.add(unnumbered(f"r{n}"))
    await writer.flush_once()  # written three times, acknowledged once
    assert lossy.lose == 0
    assert await requests_in(store) == 5
    receipts = await store.receivables("gw", "w1", 0, 10)
    assert [r.entry.request_id for r in receipts] == [f"r{n}" for n in range(5)]
    assert len({r.entry.entry_id for r in receipts}) == 5
    assert writer.metrics.registry.get_sample_value("infercdn_gateway_ledger_errors_total") == 2
