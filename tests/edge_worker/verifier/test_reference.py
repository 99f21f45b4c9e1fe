"""The reference scores real answers from the worker's own engine: honest ones pass, cheaper models do not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.trust import answer
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.model import LlamaCppModel, load_llama
from edge_worker.verifier.reference import Reference
from routing.errors import Busy
from routing.verification import IMPOSSIBLE_GAP, DeliveredCall, ScoreRequest
from tests.waiting import wait_until

PROMPTS = ["What is the capital of France?", "Write a haiku about rain.", "Explain gravity simply.", "List two fruits."]
GAP_NATS = 1.0


@pytest.fixture(scope="module")
def reference() -> Iterator[Reference]:
    ref = Reference(bundled_model_path(), threads=2, context_length=1024)
    yield ref
    ref.close()


async def engine(path: Path, threads: int) -> AsyncIterator[LlamaCppModel]:
    llm, facts = await asyncio.to_thread(load_llama, path, context_length=1024, threads=threads, max_context=1024)
    model = LlamaCppModel(llm, facts, slots=2, max_queue=4, threads=threads)
    try:
        yield model
    finally:
        await model.close()


def chat(prompt: str, **sampling: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 24, **sampling}


async def max_gaps(reference: Reference, path: Path, threads: int = 2) -> list[float]:
    gaps = []
    async for model in engine(path, threads):
        for prompt in PROMPTS:
            job = await answer(model, chat(prompt, temperature=0))
            score = await asyncio.to_thread(reference.score, job)
            assert score.prompt_matches and score.text_matches and score.greedy
            gaps.append(score.max_gap)
    return gaps


async def test_honest_greedy_answers_stay_under_the_gap_on_any_thread_count(reference: Reference) -> None:
    for threads in (1, 2):
        assert max(await max_gaps(reference, bundled_model_path(), threads)) < GAP_NATS


async def test_a_cruder_quantization_passed_off_as_the_claimed_file_is_flagged(
    reference: Reference, cheaper_models: dict[str, Path]
) -> None:
    for label in ("Q4_0", "Q2_K"):
        gaps = await max_gaps(reference, cheaper_models[label])
        flagged = sum(g > GAP_NATS for g in gaps)
        assert flagged >= len(gaps) - 1, (label, gaps)  # a few flags convict: a handful of audits is enough


async def test_a_changed_prompt_a_changed_text_and_a_cut_answer_are_each_caught(reference: Reference) -> None:
    async for model in engine(bundled_model_path(), 2):
        job = await answer(model, chat("What is 2+2?", temperature=0, max_tokens=64))
        assert job.end_token is not None  # it stopped on its own: the end token is scored too
        honest = await asyncio.to_thread(reference.score, job)
        assert honest.prompt_matches and honest.text_matches and honest.max_gap < GAP_NATS
        # A cached answer to another question: the prompt ids are not what this request renders to.
        other = ScoreRequest(chat("What is 3+3?"), job.prompt, job.completion, job.end_token, job.text)
        assert not (await asyncio.to_thread(reference.score, other)).prompt_matches
        # Ids that do not spell what the client got.
        edited = ScoreRequest(job.request, job.prompt, job.completion, job.end_token, job.text + " (edited)")
        assert not (await asyncio.to_thread(reference.score, edited)).text_matches
        # Cut short and passed off as a natural stop: the end token lands where the model would not stop.
        half = len(job.completion) // 2
        cut_ids = job.completion[:half]
        cut_text = reference.detokenize(cut_ids)
        cut = ScoreRequest(job.request, job.prompt, cut_ids, job.end_token, cut_text)
        score = await asyncio.to_thread(reference.score, cut)
        assert score.text_matches and score.max_gap > 5 and score.max_gap_at == half


async def test_sampled_answers_get_a_z_near_zero_from_the_claimed_model_and_lower_from_a_cruder_one(
    reference: Reference, cheaper_models: dict[str, Path]
) -> None:
    totals = {}
    for label, path in (("honest", bundled_model_path()), ("Q2_K", cheaper_models["Q2_K"])):
        zs = []
        async for model in engine(path, 2):
            for seed in range(12):
                job = await answer(model, chat(PROMPTS[seed % len(PROMPTS)], temperature=1.0, seed=seed))
                score = await asyncio.to_thread(reference.score, job)
                assert score.z is not None and not score.greedy
                zs.append(score.z)
        totals[label] = sum(zs) / len(zs) ** 0.5
    assert -3 < totals["honest"] < 3
    assert totals["Q2_K"] < totals["honest"] - 2, totals


PENALISED = {"frequency_penalty": 1.0, "presence_penalty": 0.5, "max_tokens": 48}
REPETITIVE = ["Repeat the word cat ten times.", "Count from 1 to 20.", "Say yes, yes, yes, yes, yes.", *PROMPTS]


async def test_penalised_answers_are_scored_under_the_workers_penalties(reference: Reference) -> None:
    """Greedy answers under frequency and presence penalties pass, and would not if the reference left them
    out; penalised sampled answers get a Z near zero."""
    blind_gaps, zs = [], []
    async for model in engine(bundled_model_path(), 2):
        for prompt in REPETITIVE:
            job = await answer(model, chat(prompt, temperature=0, **PENALISED))
            score = await asyncio.to_thread(reference.score, job)
            assert score.prompt_matches and score.text_matches and score.max_gap < GAP_NATS, (prompt, score)
            unpenalised = {**job.request, "frequency_penalty": 0, "presence_penalty": 0}
            blind = ScoreRequest(unpenalised, job.prompt, job.completion, job.end_token, job.text)
            blind_gaps.append((await asyncio.to_thread(reference.score, blind)).max_gap)
        for seed in range(12):
            job = await answer(model, chat(REPETITIVE[seed % 3], temperature=1.0, seed=seed, **PENALISED))
            score = await asyncio.to_thread(reference.score, job)
            assert score.z is not None
            zs.append(score.z)
    assert sum(g > GAP_NATS for g in blind_gaps) >= 3, blind_gaps  # the penalties change what is chosen
    assert -3 < sum(zs) / len(zs) ** 0.5 < 3, zs


async def test_a_check_reads_again_only_what_differs_from_the_last_and_scores_the_same() -> None:
    fresh = Reference(bundled_model_path(), threads=2, context_length=1024, reuse_prompts=False)
    reusing = Reference(bundled_model_path(), threads=2, context_length=1024)
    try:
        async for model in engine(bundled_model_path(), 2):
            jobs = [await answer(model, chat(p, temperature=t)) for p in PROMPTS for t in (0, 1.0)]
        for job in jobs:
            assert await asyncio.to_thread(reusing.score, job) == await asyncio.to_thread(fresh.score, job)
        # Each reads its prompt and every scored token but the last (nothing follows it).
        read = sum(len(j.prompt) + len(j.completion) + (j.end_token is not None) - 1 for j in jobs)
        assert fresh.tokens_read == read
        assert reusing.tokens_read < read - 20 * (len(jobs) - 1)  # the chat template's opening, read once
    finally:
        fresh.close()
        reusing.close()


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
            "required": ["name", "country"],
        },
    },
}


async def test_schema_answers_are_scored_under_the_workers_grammar(
    reference: Reference, cheaper_models: dict[str, Path]
) -> None:
    """Greedy answers held to a schema pass, and would not if the reference ignored the grammar; sampled ones
    get a Z near zero (the worker redraws a refused token among the allowed ones, and the reference knows it);
    a cruder model's schema answers are flagged."""
    blind_gaps, zs, cheats = [], [], []
    async for model in engine(cheaper_models["Q2_K"], 2):
        for prompt in PROMPTS:
            job = await answer(model, chat(prompt, temperature=0, response_format=SCHEMA, max_tokens=40))
            cheats.append((await asyncio.to_thread(reference.score, job)).max_gap)
    assert sum(g > GAP_NATS for g in cheats) >= len(cheats) - 1, cheats
    async for model in engine(bundled_model_path(), 2):
        for prompt in PROMPTS:
            job = await answer(model, chat(prompt, temperature=0, response_format=SCHEMA, max_tokens=40))
            score = await asyncio.to_thread(reference.score, job)
            assert score.prompt_matches and score.text_matches and score.max_gap < GAP_NATS, (prompt, score)
            free = {k: v for k, v in job.request.items() if k != "response_format"}
            blind = ScoreRequest(free, job.prompt, job.completion, job.end_token, job.text)
            blind_gaps.append((await asyncio.to_thread(reference.score, blind)).max_gap)
        for seed in range(12):
            body = chat(PROMPTS[seed % len(PROMPTS)], temperature=1.0, seed=seed, response_format=SCHEMA, max_tokens=40)
            score = await asyncio.to_thread(reference.score, await answer(model, body))
            assert score.z is not None and score.text_matches
            zs.append(score.z)
    assert sum(g > GAP_NATS for g in blind_gaps) >= 3, blind_gaps  # the grammar forces what the model would not
    assert -3 < sum(zs) / len(zs) ** 0.5 < 3, zs


async def test_an_answer_that_breaks_its_schema_is_flagged_and_the_verifier_lives(reference: Reference) -> None:
    """A worker that ignores the grammar: prose for a schema, or JSON cut short with an end token (llama.cpp
    aborts the process if a grammar is made to accept either; the reference never feeds it one)."""
    async for model in engine(bundled_model_path(), 2):
        held = await answer(model, chat(PROMPTS[0], temperature=0, response_format=SCHEMA, max_tokens=40))
        prose = await answer(model, chat(PROMPTS[0], temperature=0, max_tokens=16))
    ignored = ScoreRequest(held.request, held.prompt, prose.completion, prose.end_token, prose.text)
    half = held.completion[: len(held.completion) // 2]
    cut = ScoreRequest(held.request, held.prompt, half, reference.end_of_text, reference.detokenize(half))
    for job in (ignored, cut):
        score = await asyncio.to_thread(reference.score, job)
        assert score.text_matches and score.max_gap >= IMPOSSIBLE_GAP, score
    assert (await asyncio.to_thread(reference.score, held)).max_gap < GAP_NATS  # and it still scores


def tool(name: str, argument: str) -> dict[str, Any]:
    parameters = {"type": "object", "properties": {argument: {"type": "string"}}, "required": [argument]}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


TOOLS = [tool("weather", "city"), tool("time_in", "zone")]
ASKS_FOR_CALLS = ["What is the weather in Paris?", "What time is it in Tokyo?", "Call the weather function for Rome."]


async def test_auto_and_required_calls_are_read_back_from_the_ids_and_scored_under_the_workers_grammar(
    reference: Reference, cheaper_models: dict[str, Path]
) -> None:
    """The client gets calls read out of the text: the reference reads the ids' text back the same way and scores
    the ids (under the grammar the worker held them to); calls other than the ids make are caught; a cruder
    model's calls are flagged."""
    bodies = [
        chat(p, temperature=0, tools=TOOLS, tool_choice=mode, max_tokens=40)
        for mode in ("auto", "required")
        for p in [*ASKS_FOR_CALLS, PROMPTS[1]]
    ]
    honest = []
    async for model in engine(bundled_model_path(), 2):
        honest = [await answer(model, body) for body in bodies]
    with_calls = [job for job in honest if job.calls]
    assert len(with_calls) >= len(ASKS_FOR_CALLS)  # every required answer, at least
    assert any(job.text for job in honest)  # and auto answers that stayed text
    for job in honest:
        score = await asyncio.to_thread(reference.score, job)
        assert score.prompt_matches and score.text_matches and score.max_gap < GAP_NATS, (job, score)

    job = with_calls[0]
    other = DeliveredCall(job.calls[0].name, '{"city": "Atlantis", "zone": "Atlantis"}')
    for tampered in (
        replace(job, calls=(other,)),  # a call the ids do not make
        replace(job, calls=job.calls * 2),
        replace(job, text="Sure, calling it now."),  # content the ids do not hold, beside the call
    ):
        assert not (await asyncio.to_thread(reference.score, tampered)).text_matches, tampered

    cheats = []
    async for model in engine(cheaper_models["Q2_K"], 2):
        for body in bodies:
            cheats.append((await asyncio.to_thread(reference.score, await answer(model, body))).max_gap)
    assert sum(g > GAP_NATS for g in cheats) >= len(cheats) - 2, cheats


async def test_closing_waits_for_a_running_check_then_refuses_new_ones() -> None:
    """A verifier stopping while it scores (freeing the model under a running check crashed the process)."""
    closing = Reference(bundled_model_path(), threads=2, context_length=1024)
    async for model in engine(bundled_model_path(), 2):
        job = await answer(model, chat("Tell me a long story about a lighthouse. " * 30, temperature=0))
    scoring = asyncio.create_task(asyncio.to_thread(closing.score, job))
    await wait_until(lambda: closing.checking or scoring.done())
    await asyncio.to_thread(closing.close)
    assert (await scoring).prompt_matches  # it finished first
    with pytest.raises(Busy):
        await asyncio.to_thread(closing.score, job)
    closing.close()  # twice is fine
