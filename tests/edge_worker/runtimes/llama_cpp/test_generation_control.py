"""A real worker stops generating for clients that leave, and sheds load when full."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.servers import Server, running
from tests.conftest import MODEL
from tests.metrics_text import sample

# Greedy SmolLM2 keeps counting for hundreds of tokens: a long generation on demand.
LONG = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6, 7,", "temperature": 0, "max_tokens": 3000, "stream": True}


async def wait_for(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def read_events(resp: aiohttp.ClientResponse, count: int) -> list[str]:
    events: list[str] = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            events.append(line[6:].decode().strip())
            if len(events) >= count:
                break
    return events


async def test_client_disconnect_through_gateway_stops_generation(gateway: Server, worker: Server) -> None:
    tokens = lambda: sample(worker.url, "infercdn_worker_generation_tokens_total", model=MODEL)  # noqa: E731
    cancelled = lambda: sample(worker.url, "infercdn_worker_generations_cancelled_total", model=MODEL)  # noqa: E731
    in_flight = lambda: sample(worker.url, "infercdn_worker_in_flight", model=MODEL)  # noqa: E731
    tokens_before, cancelled_before = tokens(), cancelled()

    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{gateway.url}/v1/completions", json=LONG)
        assert resp.status == 200
        events = await read_events(resp, 5)
        assert len(events) == 5
        resp.close()  # the client goes away mid-stream

    await wait_for(lambda: cancelled() == cancelled_before + 1)
    await wait_for(lambda: in_flight() == 0)
    stopped_at = tokens()
    await asyncio.sleep(0.5)
    assert tokens() == stopped_at, "the worker kept generating after the client left"
    # It stopped near where the client left, far from max_tokens.
    assert stopped_at - tokens_before < 100


async def test_a_full_batch_and_a_full_queue_answer_503_with_retry_after() -> None:
    with running("edge_worker", "--parallel", "2", "--max-queue", "1", "--threads", "1") as small:
        async with aiohttp.ClientSession() as session:
            running_one = await session.post(f"{small.url}/v1/completions", json=LONG)
            running_two = await session.post(f"{small.url}/v1/completions", json=LONG)
            assert running_one.status == running_two.status == 200
            await read_events(running_one, 1)
            await read_events(running_two, 1)
            assert sample(small.url, "infercdn_worker_in_flight", model=MODEL) == 2  # both slots generating
            # The third waits for a slot.
            waiting = asyncio.ensure_future(session.post(f"{small.url}/v1/completions", json=LONG))
            await wait_for(lambda: sample(small.url, "infercdn_worker_queue_depth", model=MODEL) == 1)

            rejected = await session.post(f"{small.url}/v1/completions", json={**LONG, "stream": False})
            assert rejected.status == 503
            assert int(rejected.headers["Retry-After"]) >= 1
            error = (await rejected.json())["error"]
            assert error["code"] == "worker_busy"
            assert set(error) == {"message", "type", "param", "code"}

            running_one.close()
            third = await waiting
            assert third.status == 200  # the queued one is served once a slot frees
            third.close()
            running_two.close()


async def test_worker_reports_model_info_and_counts_tokens(worker: Server) -> None:
    before = sample(worker.url, "infercdn_worker_prompt_tokens_total", model=MODEL)
    async with aiohttp.ClientSession() as session:
        body = {"model": MODEL, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 3}
        async with session.post(f"{worker.url}/v1/completions", json=body) as resp:
            usage = (await resp.json())["usage"]
    assert sample(worker.url, "infercdn_worker_prompt_tokens_total", model=MODEL) - before == usage["prompt_tokens"]
    info = sample(
        worker.url,
        "infercdn_worker_model_info",
        model=MODEL,
        quantization="Q4_1",
        quantization_class="int4",
        runtime="llama.cpp",
        context_length="8192",
    )
    assert info == 1


async def test_worker_models_carry_quantization_and_context(worker: Server) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{worker.url}/v1/models") as resp:
        (entry,) = (await resp.json())["data"]
    assert entry["id"] == MODEL
    assert entry["quantization"] == {"label": "Q4_1", "bits": 4, "class": "int4"}
    assert entry["context_length"] == 8192
