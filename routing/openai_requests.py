"""The OpenAI request bodies we accept, parsed into typed records.

Shared by the gateway (which rejects bad input before spending a worker hop)
and the edge worker (which can also be called directly). Unknown fields are
kept out of the record but pass through the gateway untouched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from routing.capabilities import MAX_N, Needs
from routing.errors import InvalidRequest
from routing.json_limits import MAX_DEPTH, JsonTooDeep, loads_bounded
from routing.openai_tools import (
    NO_TOOLS,
    TEXT,
    FunctionTool,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    parse_response_format,
    parse_tool_calls,
    parse_tool_choice,
    parse_tools,
    tool_call_id,
)

MAX_STOP_SEQUENCES = 4
# Far beyond any context window; bigger numbers are mistakes, and would overflow float arithmetic.
MAX_TOKENS_LIMIT = 1_000_000_000
_SEED_RANGE = (-(2**63), 2**64 - 1)
# OpenAI's limits: top_logprobs on chat, logprobs on (legacy) completions.
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5

# Fields we cannot honour yet. Ignoring them would hand back an answer the
# client did not ask for, so they are refused by name; the value each may
# safely have is allowed.
_UNSUPPORTED: dict[str, object] = {
    "functions": None,  # the deprecated form of tools
    "function_call": None,
    "logit_bias": None,
    "best_of": 1,
    "echo": False,
    "suffix": None,
}
# Chat-only fields, refused on /v1/completions (OpenAI has no such thing there).
_CHAT_ONLY: dict[str, object] = {"tools": None, "tool_choice": None, "response_format": None, "top_logprobs": None}


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's calls
    tool_call_id: str = ""  # a tool turn: the call it answers
    images: int = 0  # image parts, which only a vision model can read


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat or text completion request (exactly one of messages / prompt)."""

    model: str
    sampling: Sampling
    stream: bool = False
    include_usage: bool = False
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0  # alternatives per token, with logprobs
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = NO_TOOLS
    # Several calls in one answer only when asked: small models told they may repeat a call do, until
    # max_tokens (llama.cpp's server defaults to one call too).
    parallel_tool_calls: bool = False
    response_format: ResponseFormat = TEXT

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def needs(self) -> Needs:
        return Needs(
            tools=self.tool_choice.mode != "none",
            structured_output=self.response_format.structured,
            logprobs=self.logprobs,
            vision=any(m.images for m in self.messages or ()),
            n=self.n,
        )


def decode_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: strict JSON (finite numbers, valid Unicode), at most ``MAX_DEPTH`` deep."""
    try:
        obj = loads_bounded(body)
    except JsonTooDeep:
        raise InvalidRequest(f"The request body nests JSON deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:  # also strings that are not valid Unicode, such as lone surrogates
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return obj


def parse_chat_request(obj: dict[str, Any]) -> GenerationRequest:
    raw = obj.get("messages")
    if raw is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    messages = tuple(_parse_message(m, i) for i, m in enumerate(raw))
    logprobs = _optional(obj, "logprobs", bool, False)
    top_logprobs = _optional(obj, "top_logprobs", int, 0)
    if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(f"'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}.", param="top_logprobs")
    if top_logprobs and not logprobs:
        raise InvalidRequest("'top_logprobs' needs 'logprobs' set to true.", param="top_logprobs")
    tools = parse_tools(obj.get("tools"))
    return replace(
        _parse_common(obj, messages=messages),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        tools=tools,
        tool_choice=parse_tool_choice(obj.get("tool_choice"), tools),
        parallel_tool_calls=_optional(obj, "parallel_tool_calls", bool, False),
        response_format=parse_response_format(obj.get("response_format")),
    )


def parse_completion_request(obj: dict[str, Any]) -> GenerationRequest:
    raw = obj.get("prompt")
    if raw is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
        raw = raw[0]
    if not isinstance(raw, str):
        raise InvalidRequest("'prompt' must be a string (one prompt per request).", param="prompt")
    for key in _CHAT_ONLY:
        if obj.get(key) is not None:
            raise InvalidRequest(f"'{key}' is for /v1/chat/completions only.", param=key)
    # Legacy completions: logprobs is how many alternatives to return per token (0: the chosen one only).
    logprobs = _optional(obj, "logprobs", int, None)
    if logprobs is not None and not 0 <= logprobs <= MAX_COMPLETION_LOGPROBS:
        raise InvalidRequest(f"'logprobs' must be between 0 and {MAX_COMPLETION_LOGPROBS}.", param="logprobs")
    return replace(_parse_common(obj, prompt=raw), logprobs=logprobs is not None, top_logprobs=logprobs or 0)


def _parse_message(m: Any, index: int) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(m, dict):
        raise InvalidRequest(f"{where} must be an object.", param=where)
    role = m.get("role")
    if role not in ("system", "developer", "user", "assistant", "tool"):
        raise InvalidRequest(
            f"{where}.role must be one of 'system', 'developer', 'user', 'assistant', 'tool'.",
            param=f"{where}.role",
        )
    content, images = m.get("content"), 0
    if content is None:
        content = ""
    elif isinstance(content, list):
        content, images = _text_of_parts(content, where)
    elif not isinstance(content, str):
        raise InvalidRequest(f"{where}.content must be a string or an array of parts.", param=f"{where}.content")
    calls = parse_tool_calls(m.get("tool_calls"), where) if role == "assistant" else ()
    call_id = tool_call_id(m.get("tool_call_id"), f"{where}.tool_call_id") if role == "tool" else ""
    return ChatMessage("system" if role == "developer" else role, content, calls, call_id, images)


def _text_of_parts(parts: list[Any], where: str) -> tuple[str, int]:
    """The text of a message's parts, and how many images it has (their bytes are a vision model's business)."""
    texts, images = [], 0
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            images += 1
        else:
            raise InvalidRequest(f"{where}.content: parts must be text or image_url parts.", param=f"{where}.content")
    return "".join(texts), images


def _parse_common(
    obj: dict[str, Any], *, messages: tuple[ChatMessage, ...] | None = None, prompt: str | None = None
) -> GenerationRequest:
    for key, harmless in _UNSUPPORTED.items():
        value = obj.get(key)
        if value is not None and value != harmless and value not in ({}, []) and not _is_plain_text(key, value):
            raise InvalidRequest(f"'{key}' is not supported by InferCDN yet.", param=key, code="unsupported_parameter")
    model = obj.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model' (a non-empty string).", param="model")
    stream = _optional(obj, "stream", bool, False)
    stream_options = _optional(obj, "stream_options", dict, None)
    include_usage = False
    if stream_options is not None:
        include_usage = stream_options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise InvalidRequest("'stream_options.include_usage' must be a boolean.", param="stream_options")
    n = _optional(obj, "n", int, 1)
    if not 1 <= n <= MAX_N:
        raise InvalidRequest(f"'n' must be between 1 and {MAX_N}.", param="n")
    return GenerationRequest(
        model=model,
        sampling=_parse_sampling(obj),
        stream=stream,
        include_usage=include_usage,
        messages=messages,
        prompt=prompt,
        n=n,
    )


def _parse_sampling(obj: dict[str, Any]) -> Sampling:
    max_tokens = _optional(obj, "max_completion_tokens", int, None)
    if max_tokens is None:
        max_tokens = _optional(obj, "max_tokens", int, None)
    if max_tokens is not None and not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise InvalidRequest(f"'max_tokens' must be between 1 and {MAX_TOKENS_LIMIT}.", param="max_tokens")
    seed = _optional(obj, "seed", int, None)
    if seed is not None and not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise InvalidRequest("'seed' must fit in 64 bits.", param="seed")
    temperature = float(_optional(obj, "temperature", float, 1.0))
    if not 0.0 <= temperature <= 2.0:
        raise InvalidRequest("'temperature' must be between 0 and 2.", param="temperature")
    top_p = float(_optional(obj, "top_p", float, 1.0))
    if not 0.0 < top_p <= 1.0:
        raise InvalidRequest("'top_p' must be greater than 0 and at most 1.", param="top_p")
    return Sampling(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=_parse_stop(obj.get("stop")),
        seed=seed,
        frequency_penalty=_penalty(obj, "frequency_penalty"),
        presence_penalty=_penalty(obj, "presence_penalty"),
    )


def _penalty(obj: dict[str, Any], key: str) -> float:
    value = float(_optional(obj, key, float, 0.0))
    if not -2.0 <= value <= 2.0:
        raise InvalidRequest(f"'{key}' must be between -2 and 2.", param=key)
    return value


def _is_plain_text(key: str, value: Any) -> bool:
    return key == "response_format" and isinstance(value, dict) and value.get("type") == "text"


def _parse_stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or len(raw) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in raw):
        raise InvalidRequest(
            f"'stop' must be a non-empty string or an array of at most {MAX_STOP_SEQUENCES} of them.",
            param="stop",
        )
    return tuple(raw)


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", dict: "an object"}


def _optional(obj: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)
    if not ok:
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        raise InvalidRequest(f"'{key}' must be {_TYPE_NAMES[kind]}, got {shown}.", param=key)
    return value


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer with hundreds of digits
        return False
