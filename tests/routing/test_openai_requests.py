import pytest

from routing.capabilities import Needs
from routing.errors import InvalidRequest
from routing.openai_requests import decode_json_object, parse_chat_request, parse_completion_request
from routing.openai_tools import ToolCall, ToolChoice

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_request_is_parsed_into_typed_fields() -> None:
    r = parse_chat_request(
        {
            **BASE,
            "temperature": 0,
            "top_p": 0.5,
            "max_tokens": 7,
            "stop": "END",
            "seed": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert r.is_chat and r.stream and r.include_usage
    assert r.sampling.temperature == 0.0 and r.sampling.top_p == 0.5
    assert r.sampling.max_tokens == 7 and r.sampling.stop == ("END",) and r.sampling.seed == 3


def test_text_parts_and_developer_role_are_accepted() -> None:
    r = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
        }
    )
    assert r.messages is not None
    assert (r.messages[0].role, r.messages[0].content) == ("system", "ab")


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert parse_chat_request({**BASE, "max_completion_tokens": 5, "max_tokens": 9}).sampling.max_tokens == 5


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": ""}, "model"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": True}, "max_tokens"),
        ({"n": 129}, "n"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "tools[0]"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}] * 2}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f"}}]}]},
            "messages[0].tool_calls[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": 3}, "logprobs"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ],
)
def test_bad_fields_name_their_param(patch: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request({**BASE, **patch})
    assert caught.value.param == param
    assert caught.value.status == 400


def test_completion_prompt_may_be_a_one_item_list() -> None:
    assert parse_completion_request({"model": "m", "prompt": ["x"]}).prompt == "x"
    with pytest.raises(InvalidRequest):
        parse_completion_request({"model": "m", "prompt": ["x", "y"]})
    with pytest.raises(InvalidRequest) as caught:
        parse_completion_request({"model": "m"})
    assert caught.value.param == "prompt"


def test_body_must_be_a_json_object() -> None:
    assert decode_json_object(b'{"a": 1}') == {"a": 1}
    for bad in (b"", b"nope", b"[1]", b"\xff\xfe"):
        with pytest.raises(InvalidRequest):
            decode_json_object(bad)


def test_harmless_values_of_unsupported_fields_pass() -> None:
    r = parse_chat_request({**BASE, "logprobs": False, "tools": [], "response_format": {"type": "text"}, "user": "u"})
    assert r.model == "m" and r.needs == Needs()


def test_tools_and_formats_become_records_and_needs() -> None:
    weather = {"type": "object", "properties": {"city": {"type": "string"}}}
    r = parse_chat_request(
        {
            **BASE,
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": weather}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": weather, "strict": True},
            },
            "logprobs": True,
            "top_logprobs": 4,
            "n": 3,
        }
    )
    assert r.tools[0].name == "get_weather" and r.tools[0].parameters == weather
    assert r.tool_choice == ToolChoice("function", "get_weather") and not r.parallel_tool_calls
    assert r.response_format.kind == "json_schema" and r.response_format.strict and r.response_format.schema == weather
    assert (r.logprobs, r.top_logprobs, r.n) == (True, 4, 3)
    assert r.needs == Needs(tools=True, structured_output=True, logprobs=True, n=3)


def test_tools_with_choice_none_need_no_tools_and_default_to_auto() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert parse_chat_request({**BASE, "tools": tools}).tool_choice == ToolChoice("auto")
    assert not parse_chat_request({**BASE, "tools": tools, "tool_choice": "none"}).needs.tools


def test_tool_history_and_images_are_read() -> None:
    r = parse_chat_request(
        {
            **BASE,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "see "}, {"type": "image_url", "image_url": {"url": "x"}}],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
        }
    )
    assert r.messages is not None
    user, assistant, tool = r.messages
    assert (user.content, user.images) == ("see ", 1) and r.needs.vision
    assert assistant.tool_calls == (ToolCall("c1", "f", "{}"),)
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "c1", "42")


def test_completion_logprobs_is_a_count_and_chat_fields_are_refused() -> None:
    r = parse_completion_request({"model": "m", "prompt": "x", "logprobs": 2})
    assert (r.logprobs, r.top_logprobs) == (True, 2)
    assert (parse_completion_request({"model": "m", "prompt": "x", "logprobs": 0}).logprobs) is True
    with pytest.raises(InvalidRequest) as caught:
        parse_completion_request({"model": "m", "prompt": "x", "tools": []})
    assert caught.value.param == "tools"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        # Numbers that overflow a double are not JSON we accept at all (no param).
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1' + b"0" * 400 + b"}", None),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 1e999}', None),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1e300}', "temperature"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1' + b"0" * 30 + b"}",
            "max_tokens",
        ),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1' + b"0" * 30 + b"}", "seed"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "frequency_penalty": NaN}', None),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
        (b'{"model": "m", "messages": ' + b"[" * 2000 + b"]" * 2000 + b"}", None),
    ],
)
def test_out_of_range_numbers_deep_nesting_and_lone_surrogates_are_400(raw: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(decode_json_object(raw))
    assert caught.value.status == 400
    assert caught.value.param == param
