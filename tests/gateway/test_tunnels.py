"""Workers nobody can dial, serving through the tunnel they open (real gateway, real workers, loopback).

The tunnelled worker advertises a port nobody listens on, so whatever it
serves came through its tunnel.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench.servers import Server, free_port, running
from tests.conftest import MODEL
from tests.gateway.test_registry import TOKEN, start_gateway
from tests.waiting import wait_until

QUESTION = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}


@contextmanager
def tunnelled_worker(gateway_url: str, worker_id: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as state:
        with running(
            "edge_worker",
            *("--threads", "1", "--gateway", gateway_url, "--worker-id", worker_id, "--tunnel"),
            *("--advertise-url", f"http://127.0.0.1:{free_port()}"),  # nobody listens there
            env={"INFERCDN_WORKER_JOIN_TOKEN": TOKEN, "INFERCDN_WORKER_KEY_FILE": str(Path(state) / "w.key")},
        ) as server:
            yield server


async def fleet_row(session: aiohttp.ClientSession, gw: str, worker_id: str) -> dict[str, object] | None:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        rows = [w for w in (await resp.json())["workers"] if w["id"] == worker_id]
    return rows[0] if rows else None


async def serving_through_tunnel(session: aiohttp.ClientSession, gw: str, worker_id: str) -> bool:
    row = await fleet_row(session, gw, worker_id)
    return row is not None and row["via"] == "tunnel" and row["health"] != "unreachable" and row["rtt_ms"] is not None


async def test_a_worker_nobody_can_dial_serves_through_its_tunnel(session: aiohttp.ClientSession) -> None:
    gateway, gw = await start_gateway(probe_interval_s=0.2)
    try:
        with tunnelled_worker(gw, "behind-nat"):
            await wait_until(lambda: serving_through_tunnel(session, gw, "behind-nat"))

            async with session.post(f"{gw}/v1/completions", json=QUESTION) as resp:
                assert resp.status == 200, await resp.text()
                assert "Paris" in (await resp.json())["choices"][0]["text"]
                assert resp.headers["x-infercdn-worker"] == "behind-nat"

            chat = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
            async with session.post(f"{gw}/v1/chat/completions", json={**chat, "stream": True}) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/event-stream"
                events = [line async for line in resp.content if line.startswith(b"data: ")]
            assert events[-1] == b"data: [DONE]\n"
            deltas = [json.loads(e[6:])["choices"][0]["delta"] for e in events[:-1]]
            assert any(d.get("content") for d in deltas)

            row = await fleet_row(session, gw, "behind-nat")
            assert row is not None and row["url"].startswith("http://127.0.0.1:")  # a label, never dialled
    finally:
        await gateway.close()
