"""/v1/embeddings through the official openai client → real gateway → real llama.cpp workers:
all-MiniLM-L6-v2 (converted at setup, ``tests.embedding_model``) beside the chat model."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.servers import Server
from routing.capabilities import EMBEDDING_ONLY, Capabilities
from tests.conftest import EMBEDDING_MODEL, MODEL
from tests.gateway.standin import OFFER, StandIn, start_gateway, start_standin
from tests.gateway.test_openai_client import async_client, client

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
]


def _vectors(result: Any) -> np.ndarray:
    return np.array([d.embedding for d in sorted(result.data, key=lambda d: d.index)])


def test_similar_sentences_score_closer_than_unrelated_ones(mixed_gateway: Server) -> None:
    result = client(mixed_gateway).embeddings.create(model=EMBEDDING_MODEL, input=SENTENCES)
    vectors = _vectors(result)
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    eating, bread, baby, horse = range(4)
    assert similarity[eating, bread] > 0.6  # sentence-transformers gives 0.755 for this pair
    assert similarity[eating, bread] > similarity[eating, horse] > similarity[eating, baby]
    assert result.model == EMBEDDING_MODEL
    assert result.usage.prompt_tokens == result.usage.total_tokens > 4 * 3


def test_float_and_base64_encodings_carry_the_same_vectors(mixed_gateway: Server) -> None:
    openai_client = client(mixed_gateway)
    floats = openai_client.embeddings.create(model=EMBEDDING_MODEL, input=SENTENCES[:2], encoding_format="float")
    # The SDK asks for base64 unless told otherwise, and decodes it: check the wire too.
    raw = openai_client.embeddings.with_raw_response.create(
        model=EMBEDDING_MODEL, input=SENTENCES[:2], encoding_format="base64"
    )
    wire = raw.http_response.json()["data"]
    decoded = np.array([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in wire])
    assert np.array_equal(decoded.astype(np.float32), _vectors(floats).astype(np.float32))
    assert raw.headers["x-infercdn-worker"]


def test_one_string_and_token_ids_embed_alike(mixed_gateway: Server) -> None:
    openai_client = client(mixed_gateway)
    text = openai_client.embeddings.create(model=EMBEDDING_MODEL, input="hello world")
    # [CLS] hello world [SEP] in the model's WordPiece vocabulary: ids are read as they are.
    tokens = openai_client.embeddings.create(model=EMBEDDING_MODEL, input=[101, 7592, 2088, 102])
    assert len(text.data) == len(tokens.data) == 1
    assert np.allclose(text.data[0].embedding, tokens.data[0].embedding, atol=1e-6)
    assert tokens.usage.prompt_tokens == 4


def test_the_models_list_says_which_model_embeds(mixed_gateway: Server) -> None:
    models = {m.id: m for m in client(mixed_gateway).models.list().data}
    embedder = Capabilities(**models[EMBEDDING_MODEL].model_extra["capabilities"])  # type: ignore[index]
    chat = Capabilities(**models[MODEL].model_extra["capabilities"])  # type: ignore[index]
    assert embedder.embeddings and not embedder.generation
    assert chat.generation and not chat.embeddings


@pytest.mark.parametrize(
    ("ask", "param", "says"),
    [
        ({"model": MODEL, "input": "hello"}, "model", f"model '{MODEL}' has no worker that supports embeddings"),
        ({"model": EMBEDDING_MODEL, "input": "hello", "dimensions": 128}, "dimensions", "384-dimensional"),
        ({"model": EMBEDDING_MODEL, "input": ""}, "input", "must not be empty"),
        ({"model": EMBEDDING_MODEL, "input": ["ok", ""]}, "input", "'input[1]' must not be empty"),
        ({"model": EMBEDDING_MODEL, "input": [[]]}, "input", "'input[0]' must be"),
        ({"model": EMBEDDING_MODEL, "input": "hello", "encoding_format": "int8"}, "encoding_format", "'float' or"),
        ({"model": EMBEDDING_MODEL, "input": ["x"] * 2049}, "input", "at most 2048"),
        ({"model": EMBEDDING_MODEL, "input": [[101, 2**31]]}, "input", "must be a non-empty string"),
        ({"model": EMBEDDING_MODEL, "input": [[101, 40000, 102]]}, "input", "past the model's vocabulary"),
        ({"model": EMBEDDING_MODEL, "input": "word " * 600}, "input", "maximum context length is 512"),
        # Short for the gateway's estimate (150 tokens), too long once tokenized (602): the worker says so.
        ({"model": EMBEDDING_MODEL, "input": "a," * 300}, "input", "however input[0] has 602 tokens"),
    ],
)
async def test_bad_embedding_requests_get_a_400_that_says_why(
    mixed_gateway: Server, ask: dict[str, Any], param: str, says: str
) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{mixed_gateway.url}/v1/embeddings", json=ask) as r:
        body = await r.json()
        assert r.status == 400, body
    assert says in body["error"]["message"]
    assert body["error"]["param"] == param


def test_a_chat_request_for_the_embedding_model_is_refused_by_name(mixed_gateway: Server) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(mixed_gateway).chat.completions.create(
            model=EMBEDDING_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert f"model '{EMBEDDING_MODEL}' has no worker that supports generation" in str(refused.value)


async def test_many_inputs_at_once_match_each_alone(mixed_gateway: Server) -> None:
    """Inputs packed many to a decode (and over several decodes) embed as they do one by one."""
    openai_client = async_client(mixed_gateway)
    inputs = [f"Sentence number {i} talks about {topic}." for i in range(30) for topic in ("cats", "the sea")]
    together = _vectors(await openai_client.embeddings.create(model=EMBEDDING_MODEL, input=inputs))
    for index in (0, 31, 59):
        alone = await openai_client.embeddings.create(model=EMBEDDING_MODEL, input=inputs[index])
        assert np.allclose(together[index], alone.data[0].embedding, atol=1e-4)


# --- workers that answer embeddings wrongly -------------------------------------------------------

EMBEDDING_OFFER = replace(OFFER, model="standin-embedder", capabilities=EMBEDDING_ONLY)


def _answer(data: list[Any]) -> Any:
    async def behaviour(request: web.Request) -> web.StreamResponse:
        body = {"object": "list", "data": data, "model": "standin-embedder", "usage": {"prompt_tokens": 3}}
        return web.json_response(body)

    return behaviour


def _b64(values: list[float]) -> str:
    return base64.b64encode(np.array(values, dtype="<f4").tobytes()).decode()


GOOD = [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}]
BAD_ANSWERS = {
    "no data": [],
    "two vectors for one input": [*GOOD, {"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
    "an index out of range": [{"object": "embedding", "index": 3, "embedding": [0.6, 0.8]}],
    "a string in the vector": [{"object": "embedding", "index": 0, "embedding": [0.6, "0.8"]}],
    "a nested vector": [{"object": "embedding", "index": 0, "embedding": [[0.6], [0.8]]}],
    "base64 when floats were asked": [{"object": "embedding", "index": 0, "embedding": _b64([0.6, 0.8])}],
}


@pytest.mark.parametrize("bad", sorted(BAD_ANSWERS))
async def test_a_wrong_embeddings_answer_fails_over_to_an_honest_worker(
    standins: list[StandIn], gateways: list[TestServer], bad: str
) -> None:
    liar = await start_standin(standins, behaviour=_answer(BAD_ANSWERS[bad]), offer=EMBEDDING_OFFER)
    honest = await start_standin(standins, behaviour=_answer(GOOD), offer=EMBEDDING_OFFER)
    url = await start_gateway(gateways, liar.url, honest.url, max_attempts=2)
    ask = {"model": "standin-embedder", "input": "hello", "encoding_format": "float"}
    async with aiohttp.ClientSession() as session:
        for _ in range(4):  # whichever goes first, the client gets the honest answer
            async with session.post(f"{url}/v1/embeddings", json=ask) as r:
                assert r.status == 200
                assert (await r.json())["data"] == GOOD
    assert liar.hits >= 1


async def test_a_non_finite_base64_vector_never_reaches_the_client(
    standins: list[StandIn], gateways: list[TestServer]
) -> None:
    nan = [{"object": "embedding", "index": 0, "embedding": _b64([0.6, float("nan")])}]
    liar = await start_standin(standins, behaviour=_answer(nan), offer=EMBEDDING_OFFER)
    url = await start_gateway(gateways, liar.url)
    ask = {"model": "standin-embedder", "input": "hello", "encoding_format": "base64"}
    async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/embeddings", json=ask) as r:
        body = await r.json()
    assert r.status == 502 and "not finite" not in str(body)  # the worker's detail stays in the logs
    assert liar.hits == 1
