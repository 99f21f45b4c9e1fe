"""A vLLM reference's gap at one position, and a sampled answer's Z, from the prompt logprobs vLLM returns (its
real answers are scored in tests/edge_worker/runtimes/vllm/test_vllm_audits.py, where vLLM is installed)."""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge_worker.verifier.generation_defaults import GenerationDefaults
from edge_worker.verifier.vllm_reference import VllmReference, _gap
from routing.errors import InvalidRequest
from routing.verification import IMPOSSIBLE_GAP, ScoreRequest


def entry(logprob: float, rank: int) -> dict[str, object]:
    return {"logprob": logprob, "rank": rank, "decoded_token": "x"}


def test_the_gap_is_the_likeliest_tokens_log_probability_less_the_chosen_ones() -> None:
    assert _gap({"504": entry(-0.2, 1)}, 504) == 0.0  # the likeliest: vLLM lists it alone
    assert abs(_gap({"7": entry(-3.0, 4), "504": entry(-0.5, 1)}, 7) - 2.5) < 1e-9
    assert _gap({"504": entry(-0.2, 1)}, 7) == IMPOSSIBLE_GAP  # not listed: vLLM did not score that token
    assert _gap({"7": entry(float("-inf"), 9000), "504": entry(-0.1, 1)}, 7) == IMPOSSIBLE_GAP
    assert _gap(None, 7) == IMPOSSIBLE_GAP


# A sampled answer's Z through a vLLM reference's own calls, against a stand-in for vLLM's three endpoints
# (``/tokenize``, ``/detokenize``, ``/v1/completions`` with ``prompt_logprobs``): the main suite has no vLLM.
# Its "model" reads one character a token and has a fixed random distribution over 40 at each position; the
# reference reads the top 20 (the rest is "any other").

VOCAB = 40


def distribution(position: int) -> np.ndarray:
    logits = np.random.default_rng(position).normal(0.0, 2.5, VOCAB)
    shifted: np.ndarray = logits - logits.max()
    return shifted - float(np.log(np.exp(shifted).sum()))


def char(token: int) -> str:
    return chr(ord("A") + token)


def prompt_logprobs_row(position: int, token: int, top: int) -> dict[str, dict[str, Any]]:
    logprobs = distribution(position)
    listed = [*(int(t) for t in np.argsort(-logprobs)[:top]), token]
    # vLLM's rank: 1 + how many tokens are likelier.
    return {
        str(t): {
            "logprob": float(logprobs[t]),
            "rank": int((logprobs > logprobs[t]).sum()) + 1,
            "decoded_token": char(t),
        }
        for t in listed
    }


def vllm_standin() -> web.Application:
    async def tokenize(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"tokens": [ord(c) - ord("A") for c in body["prompt"]]})

    async def detokenize(request: web.Request) -> web.Response:
        return web.json_response({"prompt": "".join(map(char, (await request.json())["tokens"]))})

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        ids, top = body["prompt"], body["prompt_logprobs"]
        rows = [None, *(prompt_logprobs_row(p, t, top) for p, t in enumerate(ids) if p)]
        return web.json_response({"choices": [{"text": "", "prompt_logprobs": rows}]})

    app = web.Application()
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_post("/v1/completions", completions)
    return app


def sampled_job(rng: np.random.Generator, temperature: float, honest: bool, **extra: Any) -> ScoreRequest:
    prompt, completion = (0, 1), []
    for position in range(len(prompt), len(prompt) + 24):
        logprobs = distribution(position)
        if honest:
            q = np.exp(logprobs / temperature)
            completion.append(int(rng.choice(VOCAB, p=q / q.sum())))
        else:  # other weights: any of the ten likeliest, alike
            completion.append(int(rng.choice(np.argsort(-logprobs)[:10])))
    body = {"model": "smol", "prompt": "AB", "temperature": temperature, "max_tokens": 24, **extra}
    return ScoreRequest(body, prompt, tuple(completion), None, "".join(map(char, completion)))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
async def test_sampled_answers_get_a_z_near_0_when_honest_and_below_it_from_other_weights(temperature: float) -> None:
    rng = np.random.default_rng(3)
    async with TestServer(vllm_standin(), host="127.0.0.1") as standin, aiohttp.ClientSession() as session:
        reference = VllmReference(session, str(standin.make_url("")), "smol", "0" * 64, top_logprobs=20)
        honest = [await reference.score(sampled_job(rng, temperature, True)) for _ in range(60)]
        cheat = [await reference.score(sampled_job(rng, temperature, False)) for _ in range(60)]
    for score in honest + cheat:
        assert score.prompt_matches and score.text_matches and not score.greedy and score.z is not None
    honest_z = statistics.mean(s.z for s in honest if s.z is not None)
    cheat_z = statistics.mean(s.z for s in cheat if s.z is not None)
    assert abs(honest_z) < 0.5, honest_z  # 60 N(0, 1) draws: within ±0.5 with probability 0.9999
    assert cheat_z < -1.0, cheat_z  # ΣZ/√50 about -7 and below: convicted within 50 such checks


async def test_a_sampled_answer_whose_sampler_the_model_directory_may_set_is_refused_not_guessed() -> None:
    rng = np.random.default_rng(4)
    async with TestServer(vllm_standin(), host="127.0.0.1") as standin, aiohttp.ClientSession() as session:
        defaults = GenerationDefaults({"top_p": 0.8})  # as a Qwen directory's generation_config.json
        reference = VllmReference(session, str(standin.make_url("")), "smol", "0" * 64, defaults, 20)
        with pytest.raises(InvalidRequest, match=r"top_p = 0\.8 and the request does not say"):
            await reference.score(sampled_job(rng, 1.0, True))
        stated = await reference.score(sampled_job(rng, 1.0, True, top_p=1.0))  # the request says: it counts
        drawn = sampled_job(rng, 1.0, True)
        greedy = await reference.score(replace(drawn, request={**drawn.request, "temperature": 0}))  # no sampler
        with pytest.raises(InvalidRequest, match="without top-p"):
            await reference.score(sampled_job(rng, 1.0, True, top_p=0.9))
    assert stated.z is not None and greedy.z is None and greedy.greedy
