"""Audits of vLLM workers against a vLLM reference: honest gaps, a cheat's, and what a check costs.

    python -m bench.trust_vllm --model DIR --reference URL --honest URL --cheat URL [--answers N]
                               [--temperature T [--top-logprobs K ...]]

DIR is the Hugging Face directory the reference's vLLM at URL serves; the
honest vLLM serves the same weights, the cheat other ones (say, the model
requantized) while claiming them. Each is asked N 24-token chats with
``return_token_ids`` (what a worker's relay asks for), greedy or at
``--temperature``, and every answer is scored as a gateway's audit would have
it scored (``edge_worker.verifier.vllm_reference``). Greedy: how many answers
pass the gap; sampled: each answer's Z over vLLM's top log-probabilities, and
how often 50 of them (drawn from those measured) sum to the conviction line,
with the reference reading each ``--top-logprobs`` number of likeliest tokens
(the reference's vLLM must allow as many: ``--max-logprobs``).
*check / serve*: a check's time over the time the answer took to serve.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from pathlib import Path

import aiohttp

from bench.overhead import table
from bench.trust import AUDITS, GAP_NATS, PROMPTS, convicted_within
from edge_worker.verifier.vllm_reference import DEFAULT_TOP_LOGPROBS, VllmReference
from routing.reputation import TrustPolicy
from routing.verification import Score, ScoreRequest

CONVICT_Z = TrustPolicy().convict_z


def z_convicted_within(zs: list[float], audits: int = AUDITS, draws: int = 10_000) -> float:
    """How often ``audits`` checks drawn from the measured Zs sum to ``ΣZ/√n`` below the conviction line."""
    rng = random.Random(0)
    line = CONVICT_Z * math.sqrt(audits)
    return sum(sum(rng.choices(zs, k=audits)) < line for _ in range(draws)) / draws


async def answers(url: str, n: int, temperature: float = 0.0) -> list[tuple[ScoreRequest, float]]:
    """N answers, as the worker's relay gets them from vLLM, with the seconds each took."""
    out = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/models") as resp:
            model = (await resp.json())["data"][0]["id"]
        for i in range(n):
            prompt = PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (#{i // len(PROMPTS)})")
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24}
            body["temperature"] = temperature
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
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (gaps); above: sampled (Z)")
    parser.add_argument("--top-logprobs", type=int, nargs="+", default=[DEFAULT_TOP_LOGPROBS])
    args = parser.parse_args()
    sampled = args.temperature > 0
    reference = await VllmReference.attach(args.reference, args.model)
    if sampled:
        header = ["configuration", "top log-probabilities", "answers", "mismatched", "Z (mean)", "Z (sd)", "Z (min)"]
    else:
        header = ["configuration", "answers", "flagged", "largest gap (median)", "largest gap (max)"]
    rows = [[*header, f"P(convicted in {AUDITS})", "check / serve"]]
    readings = args.top_logprobs if sampled else [1]
    try:
        for label, url in (("honest vLLM", args.honest), ("other weights passed off as them", args.cheat)):
            jobs = await answers(url, args.answers, args.temperature)
            for top in readings:
                reference.top_logprobs = top
                scores: list[Score] = []
                cost = []
                for job, serve_s in jobs:
                    started = time.perf_counter()
                    scores.append(await reference.score(job))
                    cost.append((time.perf_counter() - started) / serve_s)
                found = sampled_row(scores) if sampled else greedy_row(scores)
                rows.append([label, *([str(top)] if sampled else []), str(len(scores)), *found])
                rows[-1].append(f"{statistics.median(cost):.2f}")
    finally:
        await reference.close()
    print(table(rows))


def greedy_row(scores: list[Score]) -> list[str]:
    gaps = [s.max_gap if s.prompt_matches and s.text_matches else float("inf") for s in scores]
    rate = sum(g > GAP_NATS for g in gaps) / len(gaps)
    return [
        f"{rate:.0%}",
        f"{statistics.median(gaps):.2f}",
        f"{max(gaps):.2f}",
        f"{convicted_within(rate):.4f}",
    ]


def sampled_row(scores: list[Score]) -> list[str]:
    mismatched = sum(not (s.prompt_matches and s.text_matches) for s in scores)
    zs = [s.z for s in scores if s.z is not None]
    return [
        str(mismatched),
        f"{statistics.mean(zs):+.2f}",
        f"{statistics.stdev(zs):.2f}",
        f"{min(zs):+.2f}",
        f"{z_convicted_within(zs):.4f}",
    ]


if __name__ == "__main__":
    asyncio.run(main())
