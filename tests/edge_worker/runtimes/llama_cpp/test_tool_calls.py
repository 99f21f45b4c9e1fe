"""Tool calls and structured output on the llama.cpp worker: prompts, grammars, reading calls back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.servers import Server
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.gguf import read_metadata
from edge_worker.runtimes.llama_cpp.output_plan import MAX_SCHEMA_REPEAT, plan_output
from edge_worker.runtimes.llama_cpp.tool_calls import may_become_call, parse_calls, template_messages
from routing.errors import InvalidRequest
from routing.openai_requests import parse_chat_request
from routing.openai_tools import FunctionTool
from tests.conftest import MODEL
from tests.edge_worker.runtimes.llama_cpp.test_client_input import post

TOOLS = (FunctionTool("get_weather"), FunctionTool("get_time"))
TOOL_JSON: Any = [{"type": "function", "function": {"name": t.name}} for t in TOOLS]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        ' [{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',  # Hermes, Qwen
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',  # Llama 3.1
        '[TOOL_CALLS][{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]',  # Mistral
    ],
)
def test_calls_are_read_in_every_format(text: str) -> None:
    (call,) = parse_calls(text, TOOLS) or ()
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")


def test_two_tagged_calls_are_two_calls_with_their_own_ids() -> None:
    text = (
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
    )
    calls = parse_calls(text, TOOLS) or ()
    assert [c.name for c in calls] == ["get_time", "get_weather"] and calls[0].id != calls[1].id


@pytest.mark.parametrize(
    "text",
    [
        "The weather is fine.",
        '{"name": "rm_rf", "arguments": {}}',  # not one of the tools
        '{"name": "get_weather", "arguments": [1]}',
        '{"name": "get_weather", "arguments": {"city": "Par',  # cut off
        "[]",
    ],
)
def test_anything_else_is_text(text: str) -> None:
    assert parse_calls(text, TOOLS) is None


def test_text_is_held_back_only_while_it_may_still_be_a_call() -> None:
    assert all(may_become_call(t) for t in ("", " ", "{", ' {"na', "<tool", "[TOOL_C", "["))
    assert not any(may_become_call(t) for t in ("The", " Hi", "<b>", "Sure ["))


def test_the_bundled_template_gets_tools_history_and_results_in_words() -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = str(read_metadata(bundled_model_path())["tokenizer.chat_template"])
    request = parse_chat_request(
        {
            "model": MODEL,
            "tools": TOOL_JSON,
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c7",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c7", "content": "Snow."},
            ],
        }
    )
    messages: Any = template_messages(request, native=False)
    prompt = Jinja2ChatFormatter(template, "<|im_end|>", "").__call__(messages=messages).prompt
    assert "You can call these functions:" in prompt and '{"name": "get_time"' in prompt
    assert '<|im_start|>assistant\n{"name": "get_weather", "arguments": {"city": "Oslo"}}<|im_end|>' in prompt
    assert "<|im_start|>user\nResult of get_weather (call c7):\nSnow.<|im_end|>" in prompt


def test_a_template_that_takes_tools_gets_them_itself() -> None:
    request = parse_chat_request(
        {
            "model": MODEL,
            "tools": TOOL_JSON,
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "noon"},
            ],
        }
    )
    assistant, tool = template_messages(request, native=True)
    assert assistant["tool_calls"][0]["function"] == {"name": "get_time", "arguments": {}}
    assert tool == {"role": "tool", "content": "noon", "tool_call_id": "c1"}
    assert plan_output(request, native_tools=True).grammar is None  # auto: the model's own format


def _plan_grammar(**fields: Any) -> str | None:
    request = parse_chat_request({"model": MODEL, "messages": [{"role": "user", "content": "x"}], **fields})
    return plan_output(request, native_tools=False).grammar


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": TOOL_JSON},
        {"tools": TOOL_JSON, "tool_choice": "required", "parallel_tool_calls": True},
        {"tools": TOOL_JSON, "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        {"tools": TOOL_JSON, "response_format": {"type": "json_object"}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "array", "items": {"type": "number"}}},
            }
        },
    ],
)
def test_every_plan_compiles_with_the_real_vocabulary(fields: dict[str, Any]) -> None:
    import llama_cpp as lc
    from llama_cpp import Llama

    grammar = _plan_grammar(**fields)
    assert grammar is not None
    llm = Llama(model_path=str(bundled_model_path()), n_ctx=64, verbose=False)
    try:
        sampler = lc.llama_sampler_init_grammar(llm._model.vocab, grammar.encode(), b"root")
        assert sampler, grammar
        lc.llama_sampler_free(sampler)
    finally:
        llm.close()


def test_schemas_it_cannot_enforce_are_400s_at_the_worker(worker: Server) -> None:
    for schema in (
        {"$ref": "http://169.254.169.254/schema.json"},
        {"type": "string", "minLength": MAX_SCHEMA_REPEAT + 1},
        {"type": "not-a-type"},
    ):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        }
        status, answer = post(worker.url, "/v1/chat/completions", json.dumps(body).encode())
        assert status == 400, answer
        assert answer["error"]["param"] == "response_format"  # type: ignore[index]
    with pytest.raises(InvalidRequest):
        _plan_grammar(
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {"maxItems": 10**9}}}
        )


def test_a_worker_refuses_what_its_model_cannot_do(worker: Server) -> None:
    image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": image}]}
    status, answer = post(worker.url, "/v1/chat/completions", json.dumps(body).encode())
    assert status == 400 and "vision" in answer["error"]["message"]  # type: ignore[index]
