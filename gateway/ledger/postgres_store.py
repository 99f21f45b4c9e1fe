"""The shared ledger: one PostgreSQL database for many gateways (``ledger_url = "postgresql://…"``).

Each gateway writes its own rows (tagged with its key) from its one writer
task, so a worker's receipts from that gateway come out in commit order. The
hourly rollup is shared: concurrent upserts of the same row add up, and rows
are locked in one sorted order so two gateways never deadlock on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gateway.ledger.entry import Dimension, LedgerEntry, Receivable, UsageRow
from gateway.ledger.store import (
    COLUMNS,
    HOURLY_SUMS,
    OUTCOMES_QUERY,
    RAW_COLUMNS,
    RAW_TABLE,
    RECEIPT_COLUMNS,
    RECEIPTS_BY_GATEWAY,
    ROLLUP_INPUTS,
    Outcome,
    add_hourly_from,
    outcome_of,
    raw_values,
    receivable,
    schema,
    usage_row,
)

_TYPES = {"int": "bigint", "real": "double precision", "text": "text"}
SCHEMA = schema(_TYPES, "bigserial primary key", RECEIPTS_BY_GATEWAY)
# Two gateways starting at once must not race to create the same tables.
_SCHEMA_LOCK = 0x1CDB_0001

# One statement, one round trip: the rows not in yet go in, and only those are added to the rollup.
_WRITE = (
    f"with new as (insert into usage_raw ({RAW_COLUMNS}) select * from unnest("
    + ", ".join(f"${i}::{_TYPES[t.rstrip('?')]}[]" for i, (_, t) in enumerate(RAW_TABLE, 1))
    + f") on conflict (entry_id) do nothing returning {', '.join(ROLLUP_INPUTS)}), "
    + f"added as ({add_hourly_from('new where true')}) "
    + "select count(*) from new"
)


class PostgresLedger:
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresLedger:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4, command_timeout=30)
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("select pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await connection.execute(SCHEMA)
        return cls(pool)

    async def write(self, entries: Sequence[LedgerEntry], gateway: str) -> int:
        columns = list(zip(*(raw_values(e, gateway) for e in entries), strict=True))
        async with self._pool.acquire() as connection:
            inserted: int = await connection.fetchval(_WRITE, *columns)
        return inserted

    async def usage(self, dimension: Dimension, since_hour: int) -> list[UsageRow]:
        column = COLUMNS[dimension]
        sums = ", ".join(f"sum({c})" for c in HOURLY_SUMS)
        query = f"select {column}, {sums} from usage_hourly where hour >= $1 group by {column} order by {column}"
        rows = await self._pool.fetch(query, since_hour)
        return [usage_row(tuple(r), dimension) for r in rows]

    async def receivables(self, gateway: str, worker_id: str, after_seq: int, limit: int) -> list[Receivable]:
        query = (
            f"select {RECEIPT_COLUMNS} from usage_raw where gateway = $1 and worker_id = $2 and seq > $3 "
            "order by seq limit $4"
        )
        rows = await self._pool.fetch(query, gateway, worker_id, after_seq, limit)
        return [receivable(tuple(r)) for r in rows]

    async def outcomes_since(self, since: float) -> list[Outcome]:
        return [outcome_of(tuple(r)) for r in await self._pool.fetch(OUTCOMES_QUERY.format("$1"), since)]

    async def prune(self, raw_before: float, hourly_before: int) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("delete from usage_raw where at < $1", raw_before)
            await connection.execute("delete from usage_hourly where hour < $1", hourly_before)

    async def close(self) -> None:
        await self._pool.close()
