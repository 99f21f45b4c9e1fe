"""More conversations than slots: the next turn's time to first token with the RAM prompt cache and without.

    python -m bench.prompt_cache [--conversations N] [--turns T]

Two workers side by side in one run, both ``--parallel 2``: one with its RAM
prompt cache (the default), one with ``--prompt-cache-mib 0``. N chats (each
opening with a document of its own, ~250 tokens) take turns round-robin, one
request at a time, each turn streaming a short greedy answer that joins the
chat's history; so by a chat's next turn, other chats have taken both slots
and its KV is gone from them. Per turn after the first: the median time to
first token on each worker, and the ratio. Prints medians and ratios; quote
ratios, these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from contextlib import ExitStack

import aiohttp

from bench.overhead import table
from bench.servers import running
from tests.metrics_text import sample

MODEL = "smollm2-135m-instruct"
WORKERS = {"RAM prompt cache": ("--prompt-cache-mib", "-1"), "no RAM cache": ("--prompt-cache-mib", "0")}


def opening(chat: int) -> str:
    facts = " ".join(
        f"Fact {i} of file {chat}: the edge node number {chat * 31 + i} keeps its copy warm." for i in range(12)
    )
    return f"Document {chat}.\n{facts}\n"


async def turn(session: aiohttp.ClientSession, url: str, prompt: str) -> tuple[float, str]:
    """Time to first token, and the answer."""
    body = {"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 12, "stream": True}
    started = time.perf_counter()
    first: float | None = None
    text = ""
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            piece = json.loads(line[6:])["choices"][0]["text"]
            if piece and first is None:
                first = time.perf_counter() - started
            text += piece
    return (first if first is not None else time.perf_counter() - started), text


async def conversations(urls: dict[str, str], chats: int, turns: int) -> dict[str, dict[int, list[float]]]:
    ttft: dict[str, dict[int, list[float]]] = {name: {t: [] for t in range(turns)} for name in urls}
    history = {name: [opening(c) for c in range(chats)] for name in urls}
    async with aiohttp.ClientSession() as session:
        for t in range(turns):
            for c in range(chats):
                for name, url in urls.items():  # the same turn on both, one after the other
                    prompt = history[name][c] + f"Question {t}: what does fact {t} of file {c} say?\nAnswer:"
                    seconds, answer = await turn(session, url, prompt)
                    ttft[name][t].append(seconds)
                    history[name][c] = prompt + answer + "\n"
    return ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()
    quiet = ("--parallel", "2", "--threads", "2", "--log-level", "warning")
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(running("edge_worker", *quiet, *flags)).url for name, flags in WORKERS.items()
        }
        ttft = asyncio.run(conversations(urls, args.conversations, args.turns))
        restored = sample(urls["RAM prompt cache"], "infercdn_worker_prompt_ram_tokens_total", model=MODEL)
        held = sample(urls["RAM prompt cache"], "infercdn_worker_prompt_ram_bytes", model=MODEL)
    cached, bare = WORKERS
    rows = [["turn", f"TTFT ms, {cached}", f"TTFT ms, {bare}", "cache / none"]]
    for t in range(args.turns):
        a, b = statistics.median(ttft[cached][t]), statistics.median(ttft[bare][t])
        rows.append([str(t + 1), f"{a * 1000:.0f}", f"{b * 1000:.0f}", f"{a / b:.2f}"])
    print(f"{args.conversations} chats over 2 slots, medians per turn:\n")
    print(table(rows))
    print(f"\nPut back from RAM: {restored:.0f} prompt tokens; RAM held at the end: {held / 2**20:.1f} MiB.")


if __name__ == "__main__":
    main()
