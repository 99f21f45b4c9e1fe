"""``infercdn worker rotate-key`` with a real worker and a real gateway: the id moves to the new key."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from routing.identity import load_existing
from tests.conftest import MODEL
from tests.gateway.test_registry import fleet_ids, registered_worker, start_gateway
from tests.waiting import wait_until


async def enrolled(session: aiohttp.ClientSession, gw: str) -> list[tuple[str, str]]:
    async with session.get(f"{gw}/admin/v1/enrollments") as resp:
        return [(row["worker_id"], row["fingerprint"]) for row in (await resp.json())["enrollments"]]


async def rotate_key(key_file: Path) -> tuple[int, str]:
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_worker", "rotate-key", "--key-file", str(key_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await cli.communicate()
    return cli.returncode or 0, out.decode()


async def test_a_worker_rotates_its_key_and_keeps_its_id_and_its_traffic(tmp_path: Path) -> None:
    key_file = tmp_path / "worker.key"
    assert await rotate_key(key_file) == (1, f"infercdn worker rotate-key: there is no key file at {key_file}\n")
    gateway, gw = await start_gateway()
    session = aiohttp.ClientSession()
    try:
        with registered_worker(gw, "edge-r", key_file=key_file):
            await wait_until(lambda: fleet_ids(session, gw))
        first = load_existing(key_file).fingerprint
        assert await enrolled(session, gw) == [("edge-r", first)]
        status, out = await rotate_key(key_file)
        assert status == 0, out
        second = load_existing(key_file).fingerprint
        assert second != first and f"key {first} handed over to {second}" in out
        with registered_worker(gw, "edge-r", key_file=key_file):
            await wait_until(lambda: fleet_ids(session, gw))
            assert await enrolled(session, gw) == [("edge-r", second)]
            body = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}
            async with session.post(f"{gw}/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["x-infercdn-worker"] == "edge-r"
    finally:
        await session.close()
        await gateway.close()
