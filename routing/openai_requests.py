"""The OpenAI request bodies we accept, parsed into typed records.

Shared by the gateway (which rejects bad input before spending a worker hop)
and the edge worker (which can also be called directly). Unknown fields are
kept out of the record but pass through the gateway untouched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from routing.errors import InvalidRequest
from routing.json_limits import MAX_DEPTH, JsonTooDeep, loads_bounded

MAX_STOP_SEQUENCES = 4
# Far beyond any context window; bigger numbers are mistakes, and would overflow float arithmetic.
MAX_TOKENS_LIMIT = 1_000_000_000
_SEED_RANGE = (-(2**63), 2**64 - 1)

# Fields we cannot honour yet. Ignoring them would hand back an answer the
# client did not ask for (plain text instead of a tool call, no logprobs), so
# they are refused by name; the value each may safely have is allowed.
_UNSUPPORTED: dict[str, object] = {
    "tools": None,
    "tool_choice": None,
    "functions": None,
    "function_call": None,
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias": None,
    "response_format": None,
    "best_of": 1,
    "echo": False,
    "suffix": None,
}


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


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

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


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
    return _parse_common(obj, messages=messages)


def parse_completion_request(obj: dict[str, Any]) -> GenerationRequest:
    raw = obj.get("prompt")
    if raw is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
        raw = raw[0]
    if not isinstance(raw, str):
        raise InvalidRequest("'prompt' must be a string (one prompt per request).", param="prompt")
    return _parse_common(obj, prompt=raw)


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
    content = m.get("content")
    if content is None:
        content = ""
    elif isinstance(content, list):
        content = _text_of_parts(content, where)
    elif not isinstance(content, str):
        raise InvalidRequest(f"{where}.content must be a string or an array of parts.", param=f"{where}.content")
    return ChatMessage(role="system" if role == "developer" else role, content=content)


def _text_of_parts(parts: list[Any], where: str) -> str:
    texts = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest(f"{where}.content: only text parts are supported.", param=f"{where}.content")
        texts.append(part["text"])
    return "".join(texts)


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
    if n != 1:
        raise InvalidRequest("Only n=1 is supported.", param="n")
    return GenerationRequest(
        model=model,
        sampling=_parse_sampling(obj),
        stream=stream,
        include_usage=include_usage,
        messages=messages,
        prompt=prompt,
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
