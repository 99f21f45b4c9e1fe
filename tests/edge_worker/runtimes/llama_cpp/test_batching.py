"""Continuous batching on the real model: many sequences through one context, each as if alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from bench.servers import Server, running
from tests.conftest import MODEL
from tests.edge_worker.runtimes.llama_cpp.test_generation_control import LONG, read_events
from tests.metrics_text import sample
from tests.waiting import wait_until

PROMPTS = ["1, 2, 3, 4,", "The capital of France is", "Once upon a time", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def batching_worker() -> Iterator[Server]:
    # No RAM prompt cache here: the choices test needs prompts read whole when their slot is taken (a prefix
    # read from a cache gives the same greedy text, but sampled text may differ in its last digits' draws).
    with running("edge_worker", "--parallel", "4", "--threads", "2", "--prompt-cache-mib", "0") as server:
        yield server


async def complete(session: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int = 24) -> dict[str, Any]:
    body = {"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": max_tokens}
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


def text(answer: dict[str, Any]) -> str:
    return str(answer["choices"][0]["text"])


def cached(answer: dict[str, Any]) -> int:
    return int(answer["usage"]["prompt_tokens_details"]["cached_tokens"])


async def test_greedy_output_is_the_same_alone_and_in_a_full_batch(batching_worker: Server) -> None:
    url = batching_worker.url
    async with aiohttp.ClientSession() as session:
        alone = [await complete(session, url, p) for p in PROMPTS]  # one at a time
        await asyncio.gather(*(complete(session, url, p + " and") for p in PROMPTS))  # other work in the slots
        steps_before = sample(url, "infercdn_worker_batch_tokens_count", model=MODEL)
        together = await asyncio.gather(*(complete(session, url, p) for p in PROMPTS))  # all four at once
        steps = sample(url, "infercdn_worker_batch_tokens_count", model=MODEL) - steps_before
    assert [text(a) for a in together] == [text(a) for a in alone]
    # One step advanced all four: far fewer steps than tokens generated.
    generated = sum(a["usage"]["completion_tokens"] for a in together)
    assert steps < 0.5 * generated, (steps, generated)


async def test_a_repeated_prompt_reads_its_prefix_from_the_cache_and_answers_the_same(batching_worker: Server) -> None:
    url = batching_worker.url
    conversation = "User: what is a CDN?\nAssistant: A content delivery network.\nUser: and for inference?\n"
    async with aiohttp.ClientSession() as session:
        first = await complete(session, url, conversation)
        hits_before = sample(url, "infercdn_worker_prefix_cache_tokens_total", model=MODEL)
        second = await complete(session, url, conversation)
        longer = await complete(session, url, conversation + "Assistant: " + text(first))
    prompt_tokens = first["usage"]["prompt_tokens"]
    assert cached(first) < prompt_tokens - 1
    assert cached(second) == prompt_tokens - 1  # all but the last token, whose logits start the answer
    assert text(second) == text(first)
    assert cached(longer) >= prompt_tokens - 1  # the next turn pays only for what is new
    hits = sample(url, "infercdn_worker_prefix_cache_tokens_total", model=MODEL) - hits_before
    assert hits >= cached(second) + cached(longer)


async def test_one_cancelled_sequence_leaves_the_batch_and_the_others_finish(batching_worker: Server) -> None:
    url = batching_worker.url
    cancelled_before = sample(url, "infercdn_worker_generations_cancelled_total", model=MODEL)
    async with aiohttp.ClientSession() as session:
        leaving = await session.post(f"{url}/v1/completions", json=LONG)
        await read_events(leaving, 3)
        staying = asyncio.gather(*(complete(session, url, p, max_tokens=48) for p in PROMPTS[:2]))
        leaving.close()  # gone mid-stream while the others are generating
        finished = await staying
    assert all(a["usage"]["completion_tokens"] > 0 and a["choices"][0]["finish_reason"] for a in finished)
    await wait_until(lambda: sample(url, "infercdn_worker_generations_cancelled_total", model=MODEL) > cancelled_before)
    await wait_until(lambda: sample(url, "infercdn_worker_in_flight", model=MODEL) == 0)


async def test_a_long_prompt_is_read_in_chunks_while_running_streams_keep_flowing(batching_worker: Server) -> None:
    url = batching_worker.url
    long_prompt = "word " * 1500
    async with aiohttp.ClientSession() as session:
        stream = await session.post(f"{url}/v1/completions", json=LONG)
        await read_events(stream, 2)
        arrivals: list[float] = []

        async def keep_reading() -> None:
            async for line in stream.content:
                if line.startswith(b"data: {"):
                    arrivals.append(time.monotonic())

        reader = asyncio.create_task(keep_reading())
        sent = time.monotonic()
        body = {"model": MODEL, "prompt": long_prompt, "max_tokens": 1, "temperature": 0}
        async with session.post(f"{url}/v1/completions", json=body) as resp:
            assert resp.status == 200
            answered = time.monotonic()
        reader.cancel()
        stream.close()
    # About 1,500 prompt tokens read 128 per step: the running stream got a token at each of those steps.
    during = [t for t in arrivals if sent <= t <= answered]
    assert len(during) >= 8, (len(during), answered - sent)


async def test_the_choices_of_one_request_read_its_prompt_once(batching_worker: Server) -> None:
    url = batching_worker.url
    body = {"model": MODEL, "prompt": "Tell me about lighthouses. " * 20, "temperature": 0.9, "max_tokens": 12}
    async with aiohttp.ClientSession() as session:

        async def ask(**extra: Any) -> dict[str, Any]:
            async with session.post(f"{url}/v1/completions", json={**body, **extra}) as resp:
                assert resp.status == 200, await resp.text()
                answer: dict[str, Any] = await resp.json()
                return answer

        alone = []
        for i in range(3):  # choice i is seeded seed + i; each reads the whole prompt, as the first choice will
            await asyncio.gather(*(complete(session, url, p) for p in PROMPTS))  # other prompts in every slot
            alone.append(await ask(seed=11 + i))
        await asyncio.gather(*(complete(session, url, p) for p in PROMPTS))
        computed_before = sample(url, "infercdn_worker_batch_tokens_sum", model=MODEL)
        together = await ask(seed=11, n=3)
        computed = sample(url, "infercdn_worker_batch_tokens_sum", model=MODEL) - computed_before
    by_index = sorted(together["choices"], key=lambda c: c["index"])
    assert [c["text"] for c in by_index] == [text(a) for a in alone]
    usage = together["usage"]
    assert computed <= usage["prompt_tokens"] + usage["completion_tokens"], (computed, usage)


CHAT_SO_FAR = "".join(
    f"User: tell me fact number {i} about content delivery networks.\nAssistant: Fact {i}: they cache near users.\n"
    for i in range(8)
)


@pytest.mark.parametrize("ram_mib", ["-1", "0"])  # the default (automatic), and none: the control
async def test_a_chat_whose_slot_went_to_someone_else_gets_its_kv_back_from_ram(ram_mib: str) -> None:
    with running("edge_worker", "--parallel", "1", "--threads", "2", "--prompt-cache-mib", ram_mib) as worker:
        async with aiohttp.ClientSession() as session:
            first = await complete(session, worker.url, CHAT_SO_FAR)
            await complete(session, worker.url, "An unrelated request takes the only slot: " * 4)
            again = await complete(session, worker.url, CHAT_SO_FAR)
            restored = sample(worker.url, "infercdn_worker_prompt_ram_tokens_total", model=MODEL)
    prompt_tokens = first["usage"]["prompt_tokens"]
    assert prompt_tokens > 150 and text(again) == text(first)
    if ram_mib == "0":
        assert cached(again) < 10 and restored == 0  # read again from the start
    else:
        assert cached(again) == prompt_tokens - 1 == restored  # put back; only the last token is read
