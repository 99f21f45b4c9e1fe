"""Mixed client traffic through the official openai client, with what each client was told it used."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import openai

from tests.conftest import MODEL


@dataclass(frozen=True, slots=True)
class Told:
    """One answer a client received in full, with the usage it carried."""

    request_id: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


async def one_request(client: openai.AsyncOpenAI, n: int) -> Told | None:
    """Request ``n`` of a run: streamed or whole, chat or completion, by turns; None if it came without usage
    (a stream cut off before its end)."""
    request_id = f"t-{uuid.uuid4().hex}"
    headers = {"x-request-id": request_id}
    max_tokens = 2 + n % 5
    if n % 3 == 0:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Count to {n % 7}"}],
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
        usage = None
        async for chunk in stream:
            usage = chunk.usage or usage
    elif n % 3 == 1:
        chat = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Say a word about {n}"}],
            max_tokens=max_tokens,
            extra_headers=headers,
        )
        usage = chat.usage
    else:
        completion = await client.completions.create(
            model=MODEL, prompt=f"The number {n} is", max_tokens=max_tokens, extra_headers=headers
        )
        usage = completion.usage
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (details.cached_tokens or 0) if details is not None else 0
    return Told(request_id, usage.prompt_tokens, cached, usage.completion_tokens)


async def run_traffic(base_url: str, api_key: str, count: int, concurrency: int = 4) -> list[Told]:
    """``count`` requests, ``concurrency`` at a time; only answers received in full are returned."""
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    told: list[Told] = []

    async def one(n: int) -> None:
        async with gate:
            try:
                answer = await one_request(client, n)
            except (openai.APIError, openai.APIConnectionError):
                return  # not answered in full: nothing the client could hold the ledger to
            if answer is not None:
                told.append(answer)

    try:
        await asyncio.gather(*(one(n) for n in range(count)))
    finally:
        await client.close()
    return told
