"""Function calling and structured output in a chat request: ``tools``, ``tool_choice``,
``response_format`` and the tool calls of earlier assistant turns, parsed into records.

Shaped as OpenAI's API documents them; anything else is a 400 naming the field.
A schema is kept as the client sent it (a worker turns it into a grammar and
refuses what it cannot).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from routing.errors import InvalidRequest

MAX_TOOLS = 128
MAX_TOOL_CALLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_ID = 256
# A function without parameters takes an empty object.
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str = ""
    # The arguments' JSON schema (read-only; compare=False keeps the record hashable).
    parameters: dict[str, Any] = field(default_factory=lambda: dict(_NO_PARAMETERS), compare=False)
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: str  # "none" | "auto" | "required" | "function"
    function: str = ""  # with mode "function": the one to call

    @property
    def calls_forced(self) -> bool:
        return self.mode in ("required", "function")


NO_TOOLS = ToolChoice("none")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made (in a response, or in the history a client sends back)."""

    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: str  # "text" | "json_object" | "json_schema"
    schema: dict[str, Any] | None = field(default=None, compare=False)
    name: str = ""
    strict: bool = False

    @property
    def structured(self) -> bool:
        return self.kind != "text"


TEXT = ResponseFormat("text")


def parse_tools(raw: Any) -> tuple[FunctionTool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise InvalidRequest(f"'tools' must be an array of at most {MAX_TOOLS} tools.", param="tools")
    tools = tuple(_parse_tool(t, i) for i, t in enumerate(raw))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("'tools' names a function twice.", param="tools")
    return tools


def _parse_tool(t: Any, index: int) -> FunctionTool:
    where = f"tools[{index}]"
    if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
        raise InvalidRequest(f"{where} must be {{'type': 'function', 'function': {{...}}}}.", param=where)
    fn = t["function"]
    description = fn.get("description", "")
    parameters = fn.get("parameters", _NO_PARAMETERS)
    strict = fn.get("strict", False)
    if not isinstance(description, str):
        raise InvalidRequest(f"{where}.function.description must be a string.", param=where)
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"{where}.function.parameters must be a JSON schema object.", param=where)
    if not isinstance(strict, bool | None):
        raise InvalidRequest(f"{where}.function.strict must be a boolean.", param=where)
    return FunctionTool(_function_name(fn.get("name"), f"{where}.function.name"), description, parameters, bool(strict))


def parse_tool_choice(raw: Any, tools: tuple[FunctionTool, ...]) -> ToolChoice:
    if raw is None:
        return ToolChoice("auto") if tools else NO_TOOLS
    if not tools:
        raise InvalidRequest("'tool_choice' is only allowed when 'tools' are given.", param="tool_choice")
    if raw in ("none", "auto", "required"):
        return ToolChoice(raw)
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        name = _function_name(raw["function"].get("name"), "tool_choice.function.name")
        if name not in {t.name for t in tools}:
            raise InvalidRequest(f"'tool_choice' names '{name}', which is not among 'tools'.", param="tool_choice")
        return ToolChoice("function", name)
    raise InvalidRequest(
        "'tool_choice' must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
    )


def parse_tool_calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls``."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TOOL_CALLS:
        raise InvalidRequest(f"{where}.tool_calls must be an array of at most {MAX_TOOL_CALLS}.", param=where)
    calls = []
    for i, call in enumerate(raw):
        here = f"{where}.tool_calls[{i}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("arguments"), str):
            raise InvalidRequest(f"{here} must have a function with a name and arguments (a string).", param=here)
        calls.append(
            ToolCall(tool_call_id(call.get("id"), f"{here}.id"), _function_name(fn.get("name"), here), fn["arguments"])
        )
    return tuple(calls)


def tool_call_id(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > _MAX_ID:
        raise InvalidRequest(f"{where} must be a non-empty string of at most {_MAX_ID} characters.", param=where)
    return raw


def parse_response_format(raw: Any) -> ResponseFormat:
    if raw is None:
        return TEXT
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise InvalidRequest(
            "'response_format.type' must be 'text', 'json_object' or 'json_schema'.", param="response_format"
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest("'response_format.json_schema' must be an object.", param="response_format")
    schema = spec.get("schema", {})
    strict = spec.get("strict", False)
    if not isinstance(schema, dict) or not isinstance(strict, bool | None):
        raise InvalidRequest(
            "'response_format.json_schema' needs 'schema' (an object) and 'strict' (a boolean).",
            param="response_format",
        )
    name = _function_name(spec.get("name"), "response_format.json_schema.name")
    return ResponseFormat("json_schema", schema, name, bool(strict))


def _function_name(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not _NAME.match(raw):
        raise InvalidRequest(f"{where} must be 1 to 64 letters, digits, '_' or '-'.", param=where)
    return raw
