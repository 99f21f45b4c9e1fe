"""Usage receipts end to end: a real registered worker keeps what the gateway signed for it, and its sum
equals the gateway's ledger."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from routing.receipt import KEYS_PATH
from tests.gateway.ledger.traffic import run_traffic
from tests.gateway.test_ledger import usage_of
from tests.gateway.test_registry import registered_worker, start_gateway
from tests.waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def receipts(key_file: Path, *extra: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "edge_worker", "receipts", "--key-file", str(key_file), "--json", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "INFERCDN_CONFIG": ""},
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.startswith("{") else {}


def fleet_ids(url: str) -> list[str]:
    with urllib.request.urlopen(url + "/admin/v1/fleet", timeout=5) as resp:
        return [w["id"] for w in json.load(resp)["workers"]]


def gateway_key(url: str) -> str:
    with urllib.request.urlopen(url + KEYS_PATH, timeout=5) as resp:
        key: str = json.load(resp)["keys"][0]["public_key"]
        return key


async def test_a_workers_receipts_add_up_to_the_ledgers_figure_for_it(tmp_path: Path) -> None:
    server, url = await start_gateway(state_file=str(tmp_path / "gateway.sqlite3"))
    key_file = tmp_path / "worker.key"
    try:
        with registered_worker(url, "receipts-w1", key_file=key_file):
            await wait_until(lambda: asyncio.to_thread(fleet_ids, url))  # registered
            told = await run_traffic(url, "unused", 10)
            assert len(told) == 10
            ledger = (await asyncio.to_thread(usage_of, url, "worker"))["receipts-w1"]

            async def all_kept() -> bool:
                code, report = await asyncio.to_thread(receipts, key_file)
                return code == 0 and sum(t["receipts"] for t in report["totals"]) == ledger["requests"]  # type: ignore[attr-defined]

            await wait_until(all_kept)  # delivered with the worker's next heartbeats
            published = await asyncio.to_thread(gateway_key, url)
        code, report = await asyncio.to_thread(receipts, key_file, "--gateway-key", published)
    finally:
        await server.close()
    assert code == 0 and report["invalid"] == 0
    (totals,) = report["totals"]  # type: ignore[misc]
    assert totals["gateway_key"] == published
    for field in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        assert totals[field] == ledger[field] == sum(getattr(t, field) for t in told)
