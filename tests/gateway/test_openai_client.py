"""The official openai client → real gateway → real llama.cpp worker (SmolLM2)."""

from __future__ import annotations

import openai
import pytest

from bench.servers import Server
from tests.conftest import MODEL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def client(gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def async_client(gateway: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def test_completion_greedy_answers_paris(gateway: Server) -> None:
    result = client(gateway).completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=4
    )
    assert result.choices[0].text.startswith(" Paris")
    assert result.usage is not None
    assert result.usage.completion_tokens == 4
    assert result.choices[0].finish_reason == "length"


def test_chat_non_streaming_is_deterministic_at_temperature_zero(gateway: Server) -> None:
    c = client(gateway)
    messages = [{"role": "user", "content": "Hi"}]
    first = c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)  # type: ignore[arg-type]
    second = c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)  # type: ignore[arg-type]
    text = first.choices[0].message.content
    assert text and text.startswith("Hello")
    assert text == second.choices[0].message.content
    assert first.model == MODEL
    assert first.usage is not None and first.usage.prompt_tokens > 5


def test_chat_streaming_matches_non_streaming(gateway: Server) -> None:
    c = client(gateway)
    messages = [{"role": "user", "content": "Hi"}]
    whole = c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)  # type: ignore[arg-type]
    stream = c.chat.completions.create(
        model=MODEL,
        messages=messages,
        temperature=0,
        max_tokens=8,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) >= 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["length"]


def test_stop_sequence_ends_the_answer(gateway: Server) -> None:
    result = client(gateway).completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=10, stop=["."]
    )
    assert result.choices[0].text == " Paris"
    assert result.choices[0].finish_reason == "stop"


async def test_async_client_streams_completions(gateway: Server) -> None:
    c = async_client(gateway)
    stream = await c.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=4, stream=True
    )
    pieces = [chunk.choices[0].text async for chunk in stream if chunk.choices]
    assert "".join(pieces).startswith(" Paris")
    assert len(pieces) >= 4
    await c.close()


async def test_async_client_chat(gateway: Server) -> None:
    c = async_client(gateway)
    result = await c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], temperature=0, max_tokens=3
    )
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content
    await c.close()


def test_models_lists_the_fleet_with_quantizations(gateway: Server) -> None:
    models = client(gateway).models.list().data
    assert [m.id for m in models] == [MODEL]
    extra = models[0].model_extra or {}
    assert extra["quantizations"] == [{"label": "Q4_1", "bits": 4.0, "class": "int4"}]
    assert extra["context_length"] == 8192


def test_unknown_model_is_not_found(gateway: Server) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_bad_parameters_are_bad_requests(gateway: Server) -> None:
    c = client(gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=5)
    assert caught.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=500)
    assert caught.value.param == "n"


def test_prompt_beyond_context_is_a_bad_request(gateway: Server) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).completions.create(model=MODEL, prompt="hello", max_tokens=9000)
    assert caught.value.code == "context_length_exceeded"
    assert "8192" in caught.value.message  # the gateway knows the limit from the fleet


def test_seed_makes_sampling_repeatable(gateway: Server) -> None:
    c = client(gateway)

    def sample(seed: int) -> str:
        result = c.completions.create(model=MODEL, prompt="Once upon a time", temperature=1.0, max_tokens=12, seed=seed)
        return result.choices[0].text

    assert sample(11) == sample(11)
    assert len({sample(s) for s in (1, 2, 3, 4)}) > 1  # and it does sample


def test_unsupported_features_are_refused_not_ignored(gateway: Server) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "weather?"}],
            logit_bias={"1": 5},
        )
    assert caught.value.param == "logit_bias"
    assert caught.value.code == "unsupported_parameter"
