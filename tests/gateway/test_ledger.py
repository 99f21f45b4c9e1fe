"""The usage ledger end to end: real clients, a real worker, real databases, a killed gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from bench.servers import Server, running
from gateway.keys import KeyStore, create_key
from routing.ratelimit import Limits
from tests.gateway.ledger.traffic import Told, run_traffic
from tests.gateway.test_registry import start_gateway
from tests.metrics_text import sample
from tests.waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


ADMIN_KEY = "an-admin-key-of-the-test"


def usage_of(base_url: str, by: str, admin_key: str = "") -> dict[str, dict[str, int]]:
    request = urllib.request.Request(f"{base_url}/admin/v1/usage?by={by}&since=1d")
    if admin_key:
        request.add_header("Authorization", f"Bearer {admin_key}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        report = json.load(resp)
    return {row["group"]: row for row in report["rows"]} | {"total": report["total"]}


def sums(told: list[Told]) -> tuple[int, int, int, int]:
    return (
        len(told),
        sum(t.prompt_tokens for t in told),
        sum(t.cached_tokens for t in told),
        sum(t.completion_tokens for t in told),
    )


def reported(row: dict[str, int]) -> tuple[int, int, int, int]:
    return row["requests"], row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]


async def test_usage_by_key_equals_what_each_client_was_told(worker: Server, tmp_path: Path) -> None:
    store = KeyStore()
    (key_a, record_a), (key_b, record_b) = (create_key(store, name, Limits(0, 0)) for name in ("a", "b"))
    store.save(tmp_path / "keys.json")
    server, url = await start_gateway(
        workers=(worker.url,),
        api_keys_file=str(tmp_path / "keys.json"),
        state_file=str(tmp_path / "gateway.sqlite3"),
        admin_key=ADMIN_KEY,
    )
    try:
        told_a, told_b = await asyncio.gather(run_traffic(url, key_a, 12), run_traffic(url, key_b, 9))
        assert len(told_a) == 12 and len(told_b) == 9  # nothing here fails
        admin = await asyncio.to_thread(usage_of, url, "key", ADMIN_KEY)
        live = {  # the same split, live in Prometheus: (key, kind) → tokens
            (record.id, kind): await asyncio.to_thread(
                sample, url, "infercdn_gateway_usage_tokens_total", key=record.id, kind=kind
            )
            for record in (record_a, record_b)
            for kind in ("prompt", "completion")
        }
    finally:
        await server.close()
    assert reported(admin[record_a.id]) == sums(told_a)
    assert reported(admin[record_b.id]) == sums(told_b)
    assert admin["total"]["errors"] == 0
    for record, told in ((record_a, told_a), (record_b, told_b)):
        assert live[(record.id, "prompt")] == sum(t.prompt_tokens for t in told)
        assert live[(record.id, "completion")] == sum(t.completion_tokens for t in told)
    assert sum(t.cached_tokens for t in told_a + told_b) > 0  # the worker's prefix cache, counted too


def slo_requests(base_url: str) -> list[int]:
    with urllib.request.urlopen(f"{base_url}/admin/v1/fleet", timeout=10) as resp:
        return [w["slo"]["1h"]["requests"] for w in json.load(resp)["workers"]]


async def test_the_ledger_and_slos_survive_a_restart(worker: Server, tmp_path: Path) -> None:
    state = str(tmp_path / "gateway.sqlite3")
    told: list[Told] = []
    seen_at_start = []
    for _ in range(2):
        server, url = await start_gateway(workers=(worker.url,), state_file=state)
        try:
            seen_at_start += await asyncio.to_thread(slo_requests, url)
            told += await run_traffic(url, "unused", 6)
            by_model = await asyncio.to_thread(usage_of, url, "model")
        finally:
            await server.close()
    assert reported(by_model["total"]) == sums(told)
    assert seen_at_start == [0, 6]  # the second start replayed the first run's requests into the SLO windows


async def answered_rows(url: str) -> dict[str, list[tuple[int, int, int]]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "select request_id, prompt_tokens, cached_tokens, completion_tokens from usage_raw"
        )
    finally:
        await connection.close()
    found: dict[str, list[tuple[int, int, int]]] = {}
    for r in rows:
        found.setdefault(r["request_id"], []).append((r["prompt_tokens"], r["cached_tokens"], r["completion_tokens"]))
    return found


async def test_two_gateways_share_postgres_and_a_killed_one_loses_nothing_answered(
    worker: Server, postgres_url: str
) -> None:
    env = {"INFERCDN_GATEWAY_LEDGER_URL": postgres_url, "INFERCDN_GATEWAY_LEDGER_WAIT_S": "2"}
    state_b = tempfile.TemporaryDirectory(prefix="infercdn-state-")
    told: list[Told] = []
    with running("gateway", "gateway", "--worker", worker.url, env=env) as gateway_a:
        with running("gateway", "gateway", "--worker", worker.url, env={**env, "XDG_STATE_HOME": state_b.name}) as b:
            traffic_a = asyncio.create_task(run_traffic(gateway_a.url, "unused", 30))
            traffic_b = asyncio.create_task(run_traffic(b.url, "unused", 400, concurrency=6))
            first_b = len(await answered_rows(postgres_url))

            async def busy() -> bool:
                return len(await answered_rows(postgres_url)) >= first_b + 12

            await wait_until(busy)  # kill B while it is busy
            os.kill(b.process.pid, signal.SIGKILL)
            told += await traffic_b
            assert len(told) < 400  # the kill cut some requests off
        with running("gateway", "gateway", "--worker", worker.url, env={**env, "XDG_STATE_HOME": state_b.name}) as b:
            told += await run_traffic(b.url, "unused", 9)
            told += await traffic_a
            by_worker = await asyncio.to_thread(usage_of, b.url, "worker")
    state_b.cleanup()
    rows = await answered_rows(postgres_url)
    for t in told:  # every answer a client holds is in the ledger, once, with what the client was told
        assert rows.get(t.request_id) == [(t.prompt_tokens, t.cached_tokens, t.completion_tokens)], t
    ledger_tokens = sum(p + c for entries in rows.values() for p, _, c in entries)
    assert by_worker["total"]["total_tokens"] == ledger_tokens  # the rollup agrees with the raw rows
    assert by_worker["total"]["requests"] == sum(len(e) for e in rows.values())
