"""Honest gaps, many of them: the tail that sets ``audit_gap_nats`` and ``audit_convict_flags``.

    python -m bench.trust_gaps [--answers N] [--threads N] [--gpu-layers N]

Honest workers (the bundled Q4_1 file; one slot, or four sent four requests at
a time; on the CPU, or with ``--gpu-layers`` on a GPU) answer the same N greedy
24-token prompts, and each reference (the CPU, and with ``--gpu-layers`` the
GPU too) scores every answer. Per worker and reference: the largest gaps,
how many answers pass 1, 1.5, 2 and 2.5 nats, and, for the largest, which
prompt, which position and the token the worker chose there, so an outlier can
be looked at again.

Its table is in the README ("Audits on other hardware"), with what the 3.9-nat
answer it found on an H100 turned out to be (the GPU's arithmetic with flash
attention, the same on every run; not the worker's prompt reuse).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.overhead import table
from bench.trust import answers
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.verifier.reference import Reference
from routing.verification import Score, ScoreRequest

THRESHOLDS = (1.0, 1.5, 2.0, 2.5)
TOP = 3


@dataclass(frozen=True, slots=True)
class Scored:
    index: int  # which prompt (``bench.trust.body_for``)
    job: ScoreRequest
    score: Score


def outlier_line(worker: str, reference: str, scored: Scored, ref: Reference) -> str:
    at, job = scored.score.max_gap_at, scored.job
    ids = (*job.completion, *(() if job.end_token is None else (job.end_token,)))
    chosen = ref.detokenize(ids[at : at + 1]) if at < len(ids) else "?"
    before = ref.detokenize(ids[max(0, at - 6) : at])
    prompt = job.request["messages"][0]["content"]
    return (
        f"{worker} / {reference}: {scored.score.max_gap:.2f} nats at token {at} of {len(ids)}, "
        f"prompt #{scored.index} {prompt!r}: ...{before!r} then {chosen!r}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=200, help="prompts each worker answers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-layers", type=int, default=0, help="-1: workers and a second reference on the GPU")
    args = parser.parse_args()
    n, threads, gpu = args.answers, args.threads, args.gpu_layers
    claimed = bundled_model_path()
    references = {"CPU": await asyncio.to_thread(Reference, claimed, threads=threads, context_length=1024)}
    if gpu:
        references["GPU"] = await asyncio.to_thread(
            Reference, claimed, threads=threads, context_length=1024, gpu_layers=gpu
        )
    device = "GPU" if gpu else "CPU"
    workers: dict[str, Callable[[], Awaitable[tuple[list[ScoreRequest], list[float]]]]] = {
        f"{device}, 1 slot": lambda: answers(claimed, threads, 1, n, gpu),
        f"{device}, 4 at a time": lambda: answers(claimed, threads, 4, n, gpu),
    }
    rows = [["worker", "reference", "answers", f"largest gaps (top {TOP})", *(f"> {t:g} nats" for t in THRESHOLDS)]]
    outliers = []
    for worker, make in workers.items():
        jobs, _ = await make()
        for name, ref in references.items():
            scored = [Scored(i, job, await asyncio.to_thread(ref.score, job)) for i, job in enumerate(jobs)]
            assert all(s.score.prompt_matches and s.score.text_matches for s in scored), "an honest mismatch"
            ranked = sorted(scored, key=lambda s: s.score.max_gap, reverse=True)
            gaps = [s.score.max_gap for s in ranked]
            rows.append(
                [
                    worker,
                    name,
                    str(len(gaps)),
                    ", ".join(f"{g:.2f}" for g in gaps[:TOP]),
                    *(str(sum(g > t for g in gaps)) for t in THRESHOLDS),
                ]
            )
            outliers.append(outlier_line(worker, name, ranked[0], ref))
    for ref in references.values():
        ref.close()
    print(table(rows))
    print("\nThe largest gap of each pair:")
    print("\n".join(outliers))


if __name__ == "__main__":
    asyncio.run(main())
