"""Three real llama.cpp workers behind one gateway: one of them made far away
by a delaying proxy, one killed mid-run."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.servers import Server, running
from gateway.app import create_app
from gateway.config import GatewayConfig
from tests.conftest import MODEL
from tests.gateway.delaying_proxy import start_delaying_proxy
from tests.waiting import wait_until

DELAY_S = 0.3


@pytest.fixture(scope="module")
def fresh_workers() -> Iterator[tuple[Server, Server]]:
    with running("edge_worker", "--threads", "1") as a, running("edge_worker", "--threads", "1") as b:
        yield a, b


async def complete(session: aiohttp.ClientSession, gateway: str, max_tokens: int) -> tuple[int, str, int, str]:
    body = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": max_tokens, "temperature": 0}
    async with session.post(f"{gateway}/v1/completions", json=body) as resp:
        payload = await resp.json()
        text = payload["choices"][0]["text"] if resp.status == 200 else str(payload)
        return resp.status, resp.headers.get("x-infercdn-worker", ""), int(resp.headers["x-infercdn-attempts"]), text


async def rows_where(
    session: aiohttp.ClientSession, gateway: str, test: Callable[[dict[str, Any]], object], count: int = 1
) -> bool:
    """Whether at least ``count`` workers in the gateway's fleet table pass ``test``."""
    async with session.get(f"{gateway}/admin/v1/fleet") as resp:
        return sum(1 for row in (await resp.json())["workers"] if test(row)) >= count


async def test_prefers_the_near_workers_spreads_when_they_are_busy_and_survives_a_kill(
    fresh_workers: tuple[Server, Server], worker: Server, session: aiohttp.ClientSession
) -> None:
    fast_a, fast_b = fresh_workers
    far = await start_delaying_proxy(worker.url, DELAY_S, session)
    far_url = str(far.make_url("")).rstrip("/")
    config = GatewayConfig(workers=(fast_a.url, fast_b.url, far_url), probe_interval_s=0.2)
    gateway = TestServer(create_app(config, rng=random.Random(11)), host="127.0.0.1", handler_cancellation=True)
    await gateway.start_server()
    gw = str(gateway.make_url("")).rstrip("/")
    try:
        await wait_until(lambda: rows_where(session, gw, lambda row: row["rtt_ms"] is not None, count=3))

        # One at a time, the near workers are always faster.
        sequential = Counter([(await complete(session, gw, 4))[1] for _ in range(10)])
        assert sequential[far_url] == 0, sequential

        # Many at once, the near ones queue up and the far one is worth its RTT.
        burst = await asyncio.gather(*(complete(session, gw, 32) for _ in range(9)))
        assert all(status == 200 for status, *_ in burst)
        spread = Counter(w for _, w, _, _ in burst)
        assert spread[far_url] >= 1, spread
        assert spread[fast_a.url] + spread[fast_b.url] > spread[far_url], spread

        # A worker killed mid-run: every non-streaming request still gets its answer.
        requests = [asyncio.create_task(complete(session, gw, 24)) for _ in range(12)]
        await wait_until(lambda: rows_where(session, gw, lambda row: row["id"] == fast_b.url and row["in_flight"]))
        fast_b.process.kill()
        results = await asyncio.gather(*requests)
        assert [status for status, *_ in results] == [200] * 12, results
        assert all(text for *_, text in results)
        assert any(attempts > 1 for _, _, attempts, _ in results), "no request was on the killed worker"
        assert {w for _, w, _, _ in results} <= {fast_a.url, fast_b.url, far_url}
    finally:
        await gateway.close()
        await far.close()
