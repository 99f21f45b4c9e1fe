"""A served gateway process: its garbage collection, measured from its own metrics."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

import aiohttp

from bench.servers import running
from tests.gateway.standin import StandIn
from tests.metrics_text import sample


async def test_a_gateway_process_collects_its_young_objects_seldom(standins: list[StandIn]) -> None:
    """With Python's default (every 700 objects more made than freed) this gateway collected its young
    objects 95 times over these 640 requests; frozen at start and set to 20,000, not once."""
    worker = await StandIn().start()
    standins.append(worker)
    body = {"model": "standin-model", "messages": [{"role": "user", "content": "hi"}]}
    with ExitStack() as stack:
        # Started from a thread: the stand-in worker answers on this loop meanwhile.
        arguments = ("gateway", "gateway", "--worker", worker.url, "--log-level", "warning")
        gateway = await asyncio.to_thread(stack.enter_context, running(*arguments))
        before = await asyncio.to_thread(sample, gateway.url, "python_gc_collections_total", generation="0")
        async with aiohttp.ClientSession() as session:

            async def chat() -> None:
                async with session.post(f"{gateway.url}/v1/chat/completions", json=body) as resp:
                    assert resp.status == 200
                    await resp.read()

            for _ in range(20):
                await asyncio.gather(*(chat() for _ in range(32)))
        after = await asyncio.to_thread(sample, gateway.url, "python_gc_collections_total", generation="0")
    assert after - before <= 1
