"""Do grammar-constrained and logprob-capturing sequences slow down the plain ones beside them?

    python -m bench.constrained [--seconds S] [--rounds R]

One worker (``--parallel 8``), 8 closed-loop clients streaming greedy
64-token chats: 4 plain ones always, and 4 neighbours that are plain too
(the baseline), or held to a JSON schema, or asking for 5 logprobs per
token. Each mix runs for S seconds, in R interleaved rounds (medians over them). The table gives the
plain clients' tokens/s and time per output token in each mix, as ratios to
the all-plain mix: the target is that neither neighbour costs them more
than 10%. The neighbours' own tokens/s are shown for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.overhead import table
from bench.servers import running

MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 64
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "year", "tags"],
    "additionalProperties": False,
}
NEIGHBOURS: dict[str, dict[str, Any]] = {
    "plain": {},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "book", "schema": SCHEMA}}},
    "logprobs (top 5)": {"logprobs": True, "top_logprobs": 5},
}


@dataclass
class Tally:
    tokens: int = 0
    tpot_s: list[float] = field(default_factory=list)  # per request: time per output token after the first


async def stream_chat(session: aiohttp.ClientSession, url: str, n: int, extra: dict[str, Any], tally: Tally) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Describe book {n}: {n * 7919 % 1000} pages about dragons."}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    first = last = None
    tokens = 0
    async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            now = time.perf_counter()
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first, last = first or now, now
    tally.tokens += tokens
    if first is not None and last is not None and tokens > 1:
        tally.tpot_s.append((last - first) / (tokens - 1))


async def mix(url: str, extra: dict[str, Any], seconds: float) -> tuple[float, float, float]:
    """Plain clients' tokens/s and median time per output token; the neighbours' tokens/s."""
    plain, neighbours = Tally(), Tally()
    numbers = itertools.count()
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, body: dict[str, Any], tally: Tally) -> None:
        while time.perf_counter() < deadline:
            await stream_chat(session, url, next(numbers), body, tally)

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(
            *(client(session, {}, plain) for _ in range(4)), *(client(session, extra, neighbours) for _ in range(4))
        )
        elapsed = time.perf_counter() - started
    return plain.tokens / elapsed, statistics.median(plain.tpot_s), neighbours.tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per mix and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are taken over them")
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in NEIGHBOURS}
    with running("edge_worker", "--parallel", "8", "--log-level", "warning") as worker:
        asyncio.run(mix(worker.url, {}, 2.0))  # warm up
        for _ in range(args.rounds):
            for name, extra in NEIGHBOURS.items():
                samples[name].append(asyncio.run(mix(worker.url, extra, args.seconds)))
    medians = {name: tuple(statistics.median(s[i] for s in runs) for i in range(3)) for name, runs in samples.items()}
    base_tps, base_tpot, _ = medians["plain"]
    rows = [["neighbours", "plain tokens/s", "vs all plain", "plain ms/token", "vs all plain", "neighbours tokens/s"]]
    for name, (tps, tpot, other) in medians.items():
        rows.append(
            [
                name,
                f"{tps:.1f}",
                f"{tps / base_tps:.2f}",
                f"{tpot * 1000:.1f}",
                f"{tpot / base_tpot:.2f}",
                f"{other:.1f}",
            ]
        )
    print(
        f"## 4 plain + 4 neighbour greedy {MAX_TOKENS}-token chats, --parallel 8, {args.seconds:g} s x {args.rounds}\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
