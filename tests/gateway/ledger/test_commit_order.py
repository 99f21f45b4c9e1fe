"""An answer's end waits for its ledger commit: held up here by a real lock on the real PostgreSQL table."""

from __future__ import annotations

import asyncio

import asyncpg
import openai
import pytest

from bench.servers import Server
from tests.gateway.ledger.traffic import one_request
from tests.gateway.test_registry import start_gateway
from tests.metrics_text import sample
from tests.waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def blocked_inserts(connection: asyncpg.Connection) -> int:
    # Activity is read once per transaction: the locking connection would see a frozen picture.
    await connection.execute("select pg_stat_clear_snapshot()")
    query = (
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and pid <> pg_backend_pid() "
        "and query like '%insert into usage_raw%'"
    )
    return int(await connection.fetchval(query))


@pytest.mark.parametrize("n", [0, 1])  # a stream, a whole answer (see one_request)
async def test_the_client_gets_its_answer_only_after_the_ledger_has_it(
    worker: Server, postgres_url: str, n: int
) -> None:
    server, url = await start_gateway(workers=(worker.url,), ledger_url=postgres_url, ledger_wait_s=60.0)
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    locker = await asyncpg.connect(postgres_url)
    try:
        await one_request(client, 5)  # the tables exist
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("lock table usage_raw in exclusive mode")
        answer = asyncio.create_task(one_request(client, n))
        await wait_until(lambda: blocked_inserts(locker))
        assert not answer.done()  # its row is stuck behind the lock, so the client has not all of it
        await transaction.rollback()
        told = await answer
        assert told is not None
        rows = await locker.fetch("select request_id from usage_raw where request_id = $1", told.request_id)
        assert len(rows) == 1
    finally:
        await locker.close()
        await client.close()
        await server.close()


async def test_a_slow_ledger_delays_an_answer_by_ledger_wait_s_at_most(worker: Server, postgres_url: str) -> None:
    server, url = await start_gateway(workers=(worker.url,), ledger_url=postgres_url, ledger_wait_s=0.2)
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    locker = await asyncpg.connect(postgres_url)
    try:
        await one_request(client, 5)
        async with locker.transaction():
            await locker.execute("lock table usage_raw in exclusive mode")
            told = await one_request(client, 1)  # answered although its row cannot be written yet
            assert told is not None
            metrics = await asyncio.to_thread(sample, url, "infercdn_gateway_ledger_late_total")
            assert metrics == 1
        query = "select count(*) from usage_raw where request_id = $1"
        await wait_until(lambda: locker.fetchval(query, told.request_id))
    finally:
        await locker.close()
        await client.close()
        await server.close()
