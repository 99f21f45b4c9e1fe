"""Tools, structured output, logprobs and n through the official openai client → real gateway →
real llama.cpp worker (SmolLM2), streamed and not."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import jsonschema
import openai
import pytest

from bench.servers import Server
from tests.conftest import MODEL
from tests.gateway.test_openai_client import client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather now", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "The time in a city", "parameters": {}}},
]
ASK_WEATHER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
PERSON_FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


def test_a_json_schema_answer_parses_and_validates(gateway: Server) -> None:
    messages: Any = [{"role": "user", "content": "Invent a person: a name and an age."}]
    for temperature in (0, 1):
        result = client(gateway).chat.completions.create(
            model=MODEL,
            messages=messages,
            temperature=temperature,
            seed=3,
            max_tokens=60,
            response_format=PERSON_FORMAT,
        )
        assert result.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(result.choices[0].message.content or ""), PERSON)


def test_a_streamed_json_schema_answer_validates(gateway: Server) -> None:
    messages: Any = [{"role": "user", "content": "Invent a person."}]
    stream = client(gateway).chat.completions.create(
        model=MODEL,
        messages=messages,
        temperature=0.7,
        seed=5,
        max_tokens=60,
        response_format=PERSON_FORMAT,
        stream=True,
    )
    chunks = [ch for ch in stream if ch.choices]
    jsonschema.validate(json.loads("".join(ch.choices[0].delta.content or "" for ch in chunks)), PERSON)
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason] == ["stop"]


def test_json_object_mode_answers_an_object(gateway: Server) -> None:
    messages: Any = [{"role": "user", "content": "Invent a person: a name and an age."}]
    result = client(gateway).chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=200, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(result.choices[0].message.content or ""), dict)


def test_a_forced_call_has_arguments_that_validate(gateway: Server) -> None:
    forced: Any = {"type": "function", "function": {"name": "get_weather"}}
    result = client(gateway).chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, temperature=0, max_tokens=60, tools=TOOLS, tool_choice=forced
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_a_streamed_forced_call_arrives_as_tool_call_deltas(gateway: Server) -> None:
    forced: Any = {"type": "function", "function": {"name": "get_weather"}}
    stream = client(gateway).chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, temperature=0, max_tokens=60, tools=TOOLS, tool_choice=forced, stream=True
    )
    deltas = [ch.choices[0].delta for ch in stream if ch.choices]
    calls = [c for d in deltas for c in d.tool_calls or []]
    assert len(calls) >= 3, "the arguments stream as they are generated"
    assert calls[0].id and calls[0].function and calls[0].function.name == "get_weather"
    assert all(c.index == 0 and c.id is None for c in calls[1:])
    arguments = "".join(c.function.arguments or "" for c in calls if c.function)
    jsonschema.validate(json.loads(arguments), WEATHER)
    assert not any(d.content for d in deltas)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_calls_one_of_the_tools(gateway: Server, stream: bool) -> None:
    c = client(gateway)
    kwargs: Any = {"model": MODEL, "messages": ASK_WEATHER, "temperature": 0, "max_tokens": 80, "tools": TOOLS}
    if stream:
        chunks = [ch for ch in c.chat.completions.create(**kwargs, tool_choice="required", stream=True) if ch.choices]
        calls = [t for ch in chunks for t in ch.choices[0].delta.tool_calls or []]
        finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason]
    else:
        choice = c.chat.completions.create(**kwargs, tool_choice="required").choices[0]
        calls, finish = list(choice.message.tool_calls or []), [choice.finish_reason]
    assert finish == ["tool_calls"]
    assert len(calls) == 1 and calls[0].function is not None
    schema = WEATHER if calls[0].function.name == "get_weather" else {"type": "object"}
    jsonschema.validate(json.loads(calls[0].function.arguments or ""), schema)


def test_a_tool_result_round_trip_reaches_the_model(gateway: Server) -> None:
    c = client(gateway)
    forced: Any = {"type": "function", "function": {"name": "get_weather"}}
    first = c.chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, temperature=0, max_tokens=60, tools=TOOLS, tool_choice=forced
    )
    (call,) = first.choices[0].message.tool_calls or []

    def answer(result: str) -> openai.types.chat.ChatCompletion:
        history: Any = [
            *ASK_WEATHER,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ]
        return c.chat.completions.create(
            model=MODEL, messages=history, temperature=0, max_tokens=10, tools=TOOLS, tool_choice="none"
        )

    short, long = answer("Snow."), answer("Snow. " * 20)
    plain = c.chat.completions.create(model=MODEL, messages=ASK_WEATHER, max_tokens=1)
    assert short.choices[0].message.tool_calls is None and short.choices[0].message.content
    assert short.usage is not None and long.usage is not None and plain.usage is not None
    assert short.usage.prompt_tokens > plain.usage.prompt_tokens + 20, "the call and its result are in the prompt"
    assert long.usage.prompt_tokens - short.usage.prompt_tokens >= 19 * 2, "the result's text is read by the model"


def test_chat_logprobs_have_k_alternatives_and_spell_the_answer(gateway: Server) -> None:
    result = client(gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0,
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
    )
    choice = result.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    for t in tokens:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert bytes(t.bytes or []).decode() == t.token
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
        assert t.top_logprobs[0].token == t.token, "greedy: the chosen token is the likeliest"


def test_streamed_chat_logprobs_come_with_their_tokens(gateway: Server) -> None:
    stream = client(gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0,
        max_tokens=6,
        logprobs=True,
        top_logprobs=2,
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            logprobs = chunk.choices[0].logprobs
            assert logprobs is not None and logprobs.content
            assert "".join(t.token for t in logprobs.content) == chunk.choices[0].delta.content


@pytest.mark.parametrize("stream", [False, True])
def test_completion_logprobs_in_the_legacy_shape(gateway: Server, stream: bool) -> None:
    kwargs: Any = {
        "model": MODEL,
        "prompt": "The capital of France is",
        "temperature": 0,
        "max_tokens": 4,
        "logprobs": 2,
    }
    if stream:
        choices = [ch.choices[0] for ch in client(gateway).completions.create(**kwargs, stream=True) if ch.choices]
    else:
        choices = [client(gateway).completions.create(**kwargs).choices[0]]
    tokens = [t for c in choices if c.logprobs for t in c.logprobs.tokens or []]
    logprobs = [lp for c in choices if c.logprobs for lp in c.logprobs.token_logprobs or []]
    offsets = [o for c in choices if c.logprobs for o in c.logprobs.text_offset or []]
    tops = [top for c in choices if c.logprobs for top in c.logprobs.top_logprobs or []]
    text = "".join(c.text for c in choices)
    assert text.startswith(" Paris") and "".join(tokens) == text
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    assert len(logprobs) == len(tokens) == len(tops) == 4 and all(lp <= 0 for lp in logprobs)
    assert all(len(top) == 2 for top in tops)


def test_n_choices_have_their_own_indices_and_usage_adds_up(gateway: Server) -> None:
    c = client(gateway)
    messages: Any = [{"role": "user", "content": "Name an animal."}]
    result = c.chat.completions.create(model=MODEL, messages=messages, temperature=1.0, seed=11, max_tokens=8, n=3)
    assert [ch.index for ch in result.choices] == [0, 1, 2]
    assert len({ch.message.content for ch in result.choices}) > 1, "each choice draws with its own seed"
    single = c.chat.completions.create(model=MODEL, messages=messages, temperature=1.0, seed=11, max_tokens=8)
    assert result.usage is not None and single.usage is not None
    assert result.usage.prompt_tokens == single.usage.prompt_tokens
    assert result.usage.completion_tokens > single.usage.completion_tokens


def test_frequency_and_presence_penalties_change_a_repetitive_answer(gateway: Server) -> None:
    c = client(gateway)
    prompt = "yes, yes, yes, yes, yes, yes, yes, yes,"
    plain = c.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=16)
    penalised = c.completions.create(
        model=MODEL, prompt=prompt, temperature=0, max_tokens=16, frequency_penalty=1.5, presence_penalty=1.0
    )
    said, penalised_said = plain.choices[0].text, penalised.choices[0].text
    assert said.count("yes") > penalised_said.count("yes"), (said, penalised_said)


def test_streamed_n_choices_interleave_by_index(gateway: Server) -> None:
    messages: Any = [{"role": "user", "content": "Name an animal."}]
    stream = client(gateway).chat.completions.create(
        model=MODEL, messages=messages, temperature=1.0, max_tokens=8, n=2, stream=True
    )
    chunks = [ch for ch in stream if ch.choices]
    indices = [ch.choices[0].index for ch in chunks]
    assert set(indices) == {0, 1}
    assert indices != sorted(indices), "the choices are generated together, not one after the other"
    finishes = sorted(ch.choices[0].index for ch in chunks if ch.choices[0].finish_reason)
    assert finishes == [0, 1]


def test_what_no_worker_can_do_is_a_400_naming_it(gateway: Server) -> None:
    c = client(gateway)
    image: Any = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": image}])
    assert f"model '{MODEL}' has no worker that supports vision." in caught.value.message
    assert caught.value.code == "unsupported_capability" and caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model=MODEL, messages=ASK_WEATHER, n=100)
    assert "supports n=100" in caught.value.message


def test_models_list_their_capabilities(gateway: Server) -> None:
    (model,) = client(gateway).models.list().data
    capabilities = (model.model_extra or {})["capabilities"]
    assert capabilities["tools"] and capabilities["structured_output"] and capabilities["logprobs"]
    assert not capabilities["vision"] and not capabilities["embeddings"] and capabilities["max_n"] >= 2


async def test_every_line_of_a_stream_is_data(gateway: Server) -> None:
    """Hand-written SSE readers parse every non-empty line as ``data: <json>``: no comments may reach them."""
    body = {"model": MODEL, "messages": ASK_WEATHER, "max_tokens": 5, "stream": True, "logprobs": True, "n": 2}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway.url}/v1/chat/completions", json=body) as resp,
    ):
        text = (await resp.read()).decode()
    lines = [line for line in text.split("\n") if line]
    assert lines and all(line.startswith("data: ") for line in lines), lines
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        json.loads(line[len("data: ") :])
