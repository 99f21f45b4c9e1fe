"""The llama.cpp embedding runtime on a real embedding model (all-MiniLM-L6-v2, converted at setup)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.embedder import LlamaCppEmbedder, is_embedding_model, load_embedding_llama
from edge_worker.runtimes.llama_cpp.gguf import read_metadata
from routing.embedding_requests import parse_embedding_request
from routing.errors import InvalidRequest
from routing.openai_requests import parse_chat_request


@pytest.fixture(scope="module")
def embedder(embedding_model: Path) -> Iterator[LlamaCppEmbedder]:
    # A 64-token context: a few sentences fill a decode, so several decodes are needed.
    llm, facts = load_embedding_llama(embedding_model, context_length=64, threads=2, max_context=8192)
    yield LlamaCppEmbedder(llm, facts, max_queue=4)
    llm.close()


def test_a_model_that_pools_is_an_embedding_model(embedding_model: Path) -> None:
    assert is_embedding_model(read_metadata(embedding_model))
    assert not is_embedding_model(read_metadata(bundled_model_path()))


async def test_inputs_over_several_decodes_embed_as_each_alone(embedder: LlamaCppEmbedder) -> None:
    sentences = [f"This is sentence {i}, about the weather in town number {i}." for i in range(12)]
    together = await embedder.embed(parse_embedding_request({"model": "m", "input": sentences}))
    assert together.vectors.shape == (12, 384)
    for index in (0, 5, 11):
        alone = await embedder.embed(parse_embedding_request({"model": "m", "input": sentences[index]}))
        assert np.allclose(together.vectors[index], alone.vectors[0], atol=1e-4)  # f16 sums in another order
        assert alone.prompt_tokens < together.prompt_tokens


def test_a_request_that_went_away_stops_between_decodes(embedder: LlamaCppEmbedder) -> None:
    tokens = embedder._tokenize([f"Sentence {i} says something fairly long about nothing." for i in range(12)])
    stop = threading.Event()
    stop.set()
    with pytest.raises(Exception, match="went away"):
        embedder._encode(tokens, stop)
    # The model is left clean for the next request.
    assert np.isfinite(embedder._encode(tokens[:2], threading.Event())).all()


async def test_it_generates_nothing(embedder: LlamaCppEmbedder) -> None:
    with pytest.raises(InvalidRequest, match="supports generation"):
        await embedder.start(parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
