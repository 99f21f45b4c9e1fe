"""Audits against a reference: what they catch, what they cost.

    python -m bench.trust [--answers N] [--threads N] [--gpu-layers N] [--reference-gpu-layers N]

The claimed file is the bundled SmolLM2-135M Q4_1; the reference loads it.
Answers come from the worker's own engine (``LlamaCppModel``), greedy,
24 tokens, over varied prompts, from honest configurations (1 and 2 threads,
1 and 4 slots) and from cheats: the same model requantized to Q4_0 and Q2_K,
a cached answer to another prompt, and an answer cut in half and passed off
as a natural stop. With ``--gpu-layers`` the workers run on a GPU (a GPU build
of llama-cpp-python), and the 4-slot worker is sent 4 requests at a time, so
each answer is computed in a batch with others; ``--reference-gpu-layers``
puts the reference there too. Per configuration: the share of answers flagged (a gap
over the gateway's default ``audit_gap_nats``, a prompt or text that does not
match), the chance the flags that convict (``audit_convict_flags``) come within
50 audits, and the cost of a check against serving the answer it checks,
measured side by side in the same run; the flags at the earlier 1.5 nats beside.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.overhead import table
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.choice_output import ChoiceOutput
from edge_worker.runtimes.llama_cpp.events import Finished, TextDelta
from edge_worker.runtimes.llama_cpp.model import LlamaCppModel, load_llama
from edge_worker.verifier.reference import Reference
from gateway.config import GatewayConfig
from routing.openai_requests import parse_chat_request, parse_completion_request
from routing.reputation import TrustPolicy
from routing.verification import DeliveredCall, Score, ScoreRequest

GAP_NATS = GatewayConfig().audit_gap_nats
CONVICT_FLAGS = TrustPolicy().convict_flags
NARROWER_GAP_NATS = 1.5  # the earlier default, which honest answers crossed on other hardware (see the README)
AUDITS = 50
DEFAULT_RATE = 0.03
PROMPTS = [
    "What is 2+2?",
    "Name a colour.",
    "Write a haiku about rain.",
    "Explain gravity simply.",
    "List two fruits.",
    "What is the sun?",
    "Say hello in Spanish.",
    "Give me a name for a cat.",
    "What do bees make?",
    "Describe a tree in one sentence.",
    "Why is the sky blue?",
    "What is the capital of Italy?",
]


def requantized(folder: Path, label: str) -> Path:
    import llama_cpp as lc

    path = folder / f"smollm2-135m-instruct.{label}.gguf"
    params = lc.llama_model_quantize_default_params()
    params.ftype = getattr(lc, f"LLAMA_FTYPE_MOSTLY_{label}")
    params.allow_requantize, params.nthread = True, 2
    assert lc.llama_model_quantize(str(bundled_model_path()).encode(), str(path).encode(), ctypes.byref(params)) == 0
    return path


def body_for(i: int) -> dict[str, Any]:
    prompt = PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (#{i // len(PROMPTS)})")
    return {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 24, "temperature": 0}


async def answers(
    path: Path, threads: int, slots: int, n: int, gpu_layers: int = 0
) -> tuple[list[ScoreRequest], list[float]]:
    """``n`` answers, ``slots`` at a time; the seconds are each answer's own, from its start to its end."""
    llm, facts = await asyncio.to_thread(
        load_llama, path, context_length=1024, threads=threads, max_context=1024, gpu_layers=gpu_layers
    )
    model = LlamaCppModel(llm, facts, slots=slots, max_queue=4, threads=threads)
    jobs: list[ScoreRequest] = []
    seconds: list[float] = []

    async def timed(i: int) -> tuple[ScoreRequest, float]:
        started = time.perf_counter()
        job = await answer(model, body_for(i))
        return job, time.perf_counter() - started

    try:
        for first in range(0, n, slots):
            for job, took in await asyncio.gather(*map(timed, range(first, min(n, first + slots)))):
                jobs.append(job)
                seconds.append(took)
    finally:
        await model.close()
    return jobs, seconds


async def answer(model: LlamaCppModel, body: dict[str, Any]) -> ScoreRequest:
    """Generate one answer and put it as a gateway would send it to a verifier."""
    parse = parse_chat_request if "messages" in body else parse_completion_request
    request = parse(body)
    generation = (await model.start(request))[0]
    output, end = ChoiceOutput(generation.plan, request.tools), None  # as the worker's API reads it back
    async for event in generation.events():
        if isinstance(event, TextDelta):
            output.take(event.text, ())
        elif isinstance(event, Finished):
            end = event
    assert end is not None
    output.finish(end.reason)
    calls = tuple(DeliveredCall(c.name, c.arguments) for c in output.calls)
    text = "" if calls else "".join(output.text)
    return ScoreRequest(body, generation.prompt_ids, end.completion_ids, end.end_token, text, calls)


def cached(jobs: list[ScoreRequest]) -> list[ScoreRequest]:
    """Each request answered with the previous request's answer (and its prompt, to look consistent)."""
    return [
        ScoreRequest(j.request, p.prompt, p.completion, p.end_token, p.text)
        for j, p in zip(jobs, jobs[-1:] + jobs[:-1], strict=True)
    ]


def truncated(reference: Reference) -> Callable[[list[ScoreRequest]], list[ScoreRequest]]:
    eos = reference.end_of_text

    def cut(jobs: list[ScoreRequest]) -> list[ScoreRequest]:
        out = []
        for j in jobs:
            ids = j.completion[: max(1, len(j.completion) // 2)]
            out.append(ScoreRequest(j.request, j.prompt, ids, eos, reference.detokenize(ids)))
        return out

    return cut


def flagged(score: Score, gap_nats: float = GAP_NATS) -> bool:
    return not score.prompt_matches or not score.text_matches or score.max_gap > gap_nats


def convicted_within(p: float, audits: int = AUDITS, flags: int = CONVICT_FLAGS) -> float:
    """P(at least ``flags`` flags in ``audits`` checks) at a per-check flag rate ``p``."""
    return 1 - sum(math.comb(audits, k) * p**k * (1 - p) ** (audits - k) for k in range(flags))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=24, help="answers per configuration")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the worker and the reference")
    parser.add_argument("--gpu-layers", type=int, default=0, help="the workers' layers on the GPU (-1: all)")
    parser.add_argument("--reference-gpu-layers", type=int, default=0, help="the reference's layers on the GPU")
    args = parser.parse_args()
    n, threads, gpu = args.answers, args.threads, args.gpu_layers
    folder = Path(tempfile.mkdtemp(prefix="infercdn-trust-"))
    claimed = bundled_model_path()
    where = "GPU" if args.reference_gpu_layers else f"CPU, {threads} threads"
    print(f"reference on the {where}; workers on the {'GPU' if gpu else 'CPU'}")
    reference = await asyncio.to_thread(
        Reference, claimed, threads=threads, context_length=1024, gpu_layers=args.reference_gpu_layers
    )
    honest = await answers(claimed, threads, 1, n, gpu)
    on = "GPU" if gpu else f"{threads} threads"
    configurations: list[tuple[str, str, Callable[[], Any]]] = [
        (f"honest, {on}, 1 slot", "honest", lambda: asyncio.sleep(0, honest)),
        *([] if gpu else [("honest, 1 thread, 1 slot", "honest", lambda: answers(claimed, 1, 1, n))]),
        (f"honest, {on}, 4 slots, 4 at a time", "honest", lambda: answers(claimed, threads, 4, n, gpu)),
        ("Q4_0 passed off as Q4_1", "cheat", lambda: answers(requantized(folder, "Q4_0"), threads, 1, n, gpu)),
        ("Q2_K passed off as Q4_1", "cheat", lambda: answers(requantized(folder, "Q2_K"), threads, 1, n, gpu)),
        ("cached answer", "cheat", lambda: asyncio.sleep(0, (cached(honest[0]), honest[1]))),
        (
            "cut short, reported as stop",
            "cheat",
            lambda: asyncio.sleep(0, (truncated(reference)(honest[0]), honest[1])),
        ),
    ]
    header = ["configuration", "answers", "flagged", "largest gap (median)", "P(convicted in 50)", "check / serve"]
    rows = [[*header, f"flagged at {NARROWER_GAP_NATS:g} nats", f"P(convicted in 50) at {NARROWER_GAP_NATS:g}"]]
    check_times: list[float] = []
    for label, _, make in configurations:
        jobs, serve_s = await make()
        scores, score_s = [], []
        for job in jobs:
            started = time.perf_counter()
            scores.append(await asyncio.to_thread(reference.score, job))
            score_s.append(time.perf_counter() - started)
        check_times += score_s
        share = sum(map(flagged, scores)) / len(scores)
        narrower = sum(flagged(s, NARROWER_GAP_NATS) for s in scores) / len(scores)
        gap = statistics.median(s.max_gap for s in scores)
        cost = statistics.median(score_s) / statistics.median(serve_s)
        rows.append(
            [
                label,
                str(len(scores)),
                f"{share:.0%}",
                f"{gap:.2f}",
                f"{convicted_within(share):.4f}",
                f"{cost:.2f}",
                f"{narrower:.0%}",
                f"{convicted_within(narrower):.4f}",
            ]
        )
    # The same honest checks, interleaved, by this reference and by one that reads every prompt whole.
    fresh = await asyncio.to_thread(
        Reference,
        claimed,
        threads=threads,
        context_length=1024,
        reuse_prompts=False,
        gpu_layers=args.reference_gpu_layers,
    )
    timed: dict[str, list[float]] = {"reusing": [], "whole": []}
    for job in honest[0]:
        for name, ref in (("reusing", reference), ("whole", fresh)):
            started = time.perf_counter()
            await asyncio.to_thread(ref.score, job)
            timed[name].append(time.perf_counter() - started)
    fresh.close()
    reference.close()
    print(table(rows))
    serve = statistics.median(honest[1])
    cost = {name: statistics.median(t) / serve for name, t in timed.items()}
    print(
        f"\nA check takes {statistics.median(check_times) * 1000:.0f} ms (median) here. Honest checks against "
        f"serving, same run: {cost['reusing']:.2f}x reusing the last check's prompt opening, {cost['whole']:.2f}x "
        f"reading each prompt whole ({cost['reusing'] / cost['whole']:.2f}). At the trusted audit rate "
        f"({DEFAULT_RATE:.0%}) audits add {DEFAULT_RATE * cost['reusing']:.1%} to serving compute "
        f"({0.10 * cost['reusing']:.1%} for a worker on probation)."
    )


if __name__ == "__main__":
    asyncio.run(main())
