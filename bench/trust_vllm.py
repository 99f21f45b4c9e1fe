"""Audits of vLLM workers against a vLLM reference: honest gaps, a cheat's, and what a check costs.

    python -m bench.trust_vllm --model DIR --reference URL --honest URL --cheat URL [--answers N]

DIR is the Hugging Face directory the reference's vLLM at URL serves; the
honest vLLM serves the same weights, the cheat other ones (say, the model
requantized) while claiming them. Each is asked N greedy 24-token chats with
``return_token_ids`` (what a worker's relay asks for), and every answer is
scored as a gateway's audit would have it scored
(``edge_worker.verifier.vllm_reference``). *check / serve*: a check's time
over the time the answer took to serve.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import aiohttp

from bench.overhead import table
from bench.trust import AUDITS, GAP_NATS, PROMPTS, convicted_within
from edge_worker.verifier.vllm_reference import VllmReference
from routing.verification import ScoreRequest


async def answers(url: str, n: int) -> list[tuple[ScoreRequest, float]]:
    """N greedy answers, as the worker's relay gets them from vLLM, with the seconds each took."""
    out = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/models") as resp:
            model = (await resp.json())["data"][0]["id"]
        for i in range(n):
            prompt = PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (#{i // len(PROMPTS)})")
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24}
            body["temperature"] = 0
            started = time.perf_counter()
            async with session.post(f"{url}/v1/chat/completions", json={**body, "return_token_ids": True}) as resp:
                answer = await resp.json()
            seconds = time.perf_counter() - started
            choice = answer["choices"][0]
            ids = choice["token_ids"]
            on_end = choice["finish_reason"] == "stop" and choice.get("stop_reason") is None
            completion, end = (ids[:-1], ids[-1]) if on_end else (ids, None)
            text = choice["message"]["content"]
            job = ScoreRequest(body, tuple(answer["prompt_token_ids"]), tuple(completion), end, text)
            out.append((job, seconds))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the directory the reference's vLLM serves")
    parser.add_argument("--reference", required=True, help="the reference's vLLM")
    parser.add_argument("--honest", required=True, help="a vLLM serving the same weights")
    parser.add_argument("--cheat", required=True, help="a vLLM serving other weights")
    parser.add_argument("--answers", type=int, default=60)
    args = parser.parse_args()
    reference = await VllmReference.attach(args.reference, args.model)
    header = ["configuration", "answers", "flagged", "largest gap (median)", "largest gap (max)"]
    rows = [[*header, f"P(convicted in {AUDITS})", "check / serve"]]
    try:
        for label, url in (("honest vLLM", args.honest), ("other weights passed off as them", args.cheat)):
            gaps, cost = [], []
            for job, serve_s in await answers(url, args.answers):
                started = time.perf_counter()
                score = await reference.score(job)
                cost.append((time.perf_counter() - started) / serve_s)
                matches = score.prompt_matches and score.text_matches
                gaps.append(score.max_gap if matches else float("inf"))
            rate = sum(g > GAP_NATS for g in gaps) / len(gaps)
            rows.append(
                [
                    label,
                    str(len(gaps)),
                    f"{rate:.0%}",
                    f"{statistics.median(gaps):.2f}",
                    f"{max(gaps):.2f}",
                    f"{convicted_within(rate):.4f}",
                    f"{statistics.median(cost):.2f}",
                ]
            )
    finally:
        await reference.close()
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
