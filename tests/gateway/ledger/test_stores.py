"""Both ledger stores, for real: SQLite in a temp file, PostgreSQL on the session's private server."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.ledger.entry import HOUR_S, LedgerEntry
from gateway.ledger.service import open_store
from gateway.ledger.store import LedgerStore

T0 = 1_790_000_000.0  # a fixed wall-clock time: the store never reads the clock itself


def entry(worker: str = "w1", key: str = "k1", at: float = T0, **fields: object) -> LedgerEntry:
    base: dict[str, object] = {
        "entry_id": uuid.uuid4().hex,
        "request_id": uuid.uuid4().hex,
        "at": at,
        "key_id": key,
        "worker_id": worker,
        "model": "smollm2",
        "quantization": "Q4_1",
        "status": 200,
        "prompt_tokens": 10,
        "cached_tokens": 4,
        "completion_tokens": 7,
        "worker_seconds": 0.5,
        "ttft_s": 0.1,
    }
    return LedgerEntry(**{**base, **fields})  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    target = str(tmp_path / "ledger.sqlite3") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = await open_store(target)
    yield opened
    await opened.close()


async def test_totals_by_every_dimension(store: LedgerStore) -> None:
    entries = [
        entry("w1", "k1"),
        entry("w1", "k2", prompt_tokens=3, cached_tokens=0, completion_tokens=1),
        entry("w2", "k1", at=T0 + HOUR_S, status=502, completion_tokens=0),
        entry("w2", "k2", quantization="Q8_0", worker_seconds=1.25),
    ]
    assert await store.write(entries, "gw") == 4
    by_worker = {r.group: r for r in await store.usage("worker", 0)}
    assert by_worker["w1"].requests == 2 and by_worker["w1"].prompt_tokens == 13
    assert by_worker["w1"].completion_tokens == 8 and by_worker["w1"].cached_tokens == 4
    assert by_worker["w2"].errors == 1 and by_worker["w2"].worker_seconds == pytest.approx(1.75)
    by_key = {r.group: r.total_tokens for r in await store.usage("key", 0)}
    assert by_key == {"k1": 17 + 10, "k2": 4 + 17}
    by_quant = {r.group: r.requests for r in await store.usage("quantization", 0)}
    assert by_quant == {"Q4_1": 3, "Q8_0": 1}
    hours = await store.usage("hour", 0)
    assert [r.requests for r in hours] == [3, 1] and hours[0].group.endswith(":00Z")
    assert [r.requests for r in await store.usage("model", int(T0 // HOUR_S + 1) * HOUR_S)] == [1]


async def test_a_batch_written_twice_counts_once(store: LedgerStore) -> None:
    batch = [entry(), entry()]
    assert await store.write(batch, "gw") == 2
    assert await store.write([*batch, entry()], "gw") == 1  # a retried batch, plus one new entry
    (row,) = await store.usage("worker", 0)
    assert row.requests == 3 and row.prompt_tokens == 30


async def test_receivables_are_one_gateways_rows_for_one_worker_in_order(store: LedgerStore) -> None:
    mine = [entry("w1", completion_tokens=n) for n in range(5)]
    await store.write(mine[:3], "gw-a")
    await store.write([entry("w1"), entry("w2")], "gw-b")
    await store.write(mine[3:], "gw-a")
    got = await store.receivables("gw-a", "w1", 0, 100)
    assert [r.entry.entry_id for r in got] == [e.entry_id for e in mine]
    assert got[2].entry == mine[2]
    rest = await store.receivables("gw-a", "w1", got[1].seq, 2)
    assert [r.entry.completion_tokens for r in rest] == [2, 3]
    assert await store.receivables("gw-a", "w2", 0, 100) == []


async def test_prune_drops_old_raw_rows_and_old_rollups(store: LedgerStore) -> None:
    old, new = entry(at=T0 - 10 * 86400), entry(at=T0)
    await store.write([old, new], "gw")
    await store.prune(raw_before=T0 - 86400, hourly_before=0)
    assert [r.entry.entry_id for r in await store.receivables("gw", "w1", 0, 10)] == [new.entry_id]
    assert (await store.usage("worker", 0))[0].requests == 2  # the rollup is kept longer
    await store.prune(raw_before=T0 - 86400, hourly_before=int(T0 - 86400))
    assert (await store.usage("worker", 0))[0].requests == 1


async def test_two_gateways_writing_at_once_to_one_postgres_add_up(postgres_url: str) -> None:
    stores = [await open_store(postgres_url) for _ in range(2)]
    try:
        batches = [[entry(f"w{i % 3}", f"k{i % 2}", at=T0 + i) for i in range(j, j + 50)] for j in range(0, 1000, 50)]

        async def write(store: LedgerStore, gateway: str, mine: list[list[LedgerEntry]]) -> None:
            for batch in mine:
                await store.write(batch, gateway)
                await store.write(batch[:10], gateway)  # a retry of part of it: must not count again

        await asyncio.gather(write(stores[0], "a", batches[::2]), write(stores[1], "b", batches[1::2]))
        rows = await stores[0].usage("key", 0)
        assert sum(r.requests for r in rows) == 1000
        assert sum(r.prompt_tokens for r in rows) == 10_000
    finally:
        for s in stores:
            await s.close()


async def test_a_batch_longer_than_one_statement_goes_in_whole_and_once(store: LedgerStore) -> None:
    """(SQLite binds at most 1,024 rows per statement here: this batch takes three.)"""
    batch = [entry(completion_tokens=n % 7) for n in range(2500)]
    assert await store.write(batch[:100], "gw") == 100
    assert await store.write(batch, "gw") == 2400  # the first 100 were in already
    (row,) = await store.usage("worker", 0)
    assert row.requests == 2500 and row.completion_tokens == sum(n % 7 for n in range(2500))
    assert len(await store.receivables("gw", "w1", 0, 5000)) == 2500


# The SQLite ledger as sessions before the named-tuple entry wrote it: other column order, the rollup summed
# by the writer, receipts indexed by the gateway's key.
_EARLIER_SQLITE = """
create table usage_raw (seq integer primary key autoincrement, entry_id text not null unique, gateway text not null,
  request_id text not null, at real not null, hour integer not null, key_id text not null, worker_id text not null,
  model text not null, quantization text not null, status integer not null, prompt_tokens integer not null,
  cached_tokens integer not null, completion_tokens integer not null, worker_seconds real not null, ttft_s real);
create index usage_raw_receipts on usage_raw (gateway, worker_id, seq);
create index usage_raw_at on usage_raw (at);
create table usage_hourly (hour integer not null, worker_id text not null, key_id text not null, model text not null,
  quantization text not null, requests integer not null, errors integer not null, prompt_tokens integer not null,
  cached_tokens integer not null, completion_tokens integer not null, worker_seconds real not null,
  primary key (hour, worker_id, key_id, model, quantization));
insert into usage_raw (entry_id, gateway, request_id, at, hour, key_id, worker_id, model, quantization, status,
  prompt_tokens, cached_tokens, completion_tokens, worker_seconds, ttft_s)
  values ('earlier', 'gw', 'r0', 1790000000.0, 1789999200, 'k1', 'w1', 'smollm2', 'Q4_1', 200, 10, 4, 7, 0.5, 0.1);
insert into usage_hourly values (1789999200, 'w1', 'k1', 'smollm2', 'Q4_1', 1, 0, 10, 4, 7, 0.5);
"""


async def test_a_sqlite_ledger_written_by_an_earlier_version_is_kept_and_added_to(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(_EARLIER_SQLITE)
    store = await open_store(str(path))
    try:
        later = [entry(), entry(status=503, completion_tokens=0)]
        assert await store.write(later, "gw") == 2
        (row,) = await store.usage("worker", 0)
        assert (row.requests, row.errors, row.completion_tokens) == (3, 1, 14)
        got = await store.receivables("gw", "w1", 0, 10)
        assert [r.entry.entry_id for r in got] == ["earlier", *(e.entry_id for e in later)]
        assert got[0].entry.ttft_s == 0.1 and got[0].entry.quantization == "Q4_1"
    finally:
        await store.close()
