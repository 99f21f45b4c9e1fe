"""What a chat request's output must look like, as a llama.cpp grammar, and how to read it back.

- ``response_format`` ``json_object`` / ``json_schema``: a grammar from the
  schema, so the content always parses (and, with a schema, validates).
- ``tool_choice`` a named function: the output *is* its arguments, under a
  grammar from its parameters schema; it works with any model.
- ``required``: a call (or, with ``parallel_tool_calls``, an array of calls)
  to one of the tools, each held to that tool's parameters.
- ``auto``: for a model whose template takes tools, its own format, read
  back afterwards; otherwise a grammar allowing a call or an answer (free
  text, or the response format's JSON).

Whitespace in these grammars is bounded (llama.cpp's schema converter), so a
small model cannot pad forever.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from routing.errors import InvalidRequest
from routing.openai_requests import GenerationRequest
from routing.openai_tools import FunctionTool

# The most calls one forced answer may make at once.
MAX_PARALLEL_CALLS = 8
# Lengths and counts a schema may ask for: the converter writes a repetition out in full, so a
# minLength of a billion would be gigabytes of grammar. Far beyond what one answer holds anyway.
MAX_SCHEMA_REPEAT = 4096
_REPEATS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_ROOT = re.compile(r'(?<![\w"-])root(?![\w"-])')


@dataclass(frozen=True, slots=True)
class OutputPlan:
    grammar: str | None = None
    may_call: bool = False  # the output may be tool calls: read it back as such
    function: str = ""  # the output is this function's arguments (tool_choice names it)


PLAIN_TEXT = OutputPlan()


def plan_output(request: GenerationRequest, native_tools: bool) -> OutputPlan:
    choice, fmt = request.tool_choice, request.response_format
    answer_schema: dict[str, Any] | None = None
    if fmt.kind == "json_schema":
        answer_schema = fmt.schema or {}
    elif fmt.kind == "json_object":
        answer_schema = {"type": "object"}
    if choice.mode == "function":
        tool = next(t for t in request.tools if t.name == choice.function)
        return OutputPlan(_grammar(tool.parameters, "tools"), function=tool.name)
    calls = _calls_schema(request.tools, request.parallel_tool_calls)
    if choice.mode == "required":
        return OutputPlan(_grammar(calls, "tools"), may_call=True)
    if choice.mode == "auto":
        if answer_schema is not None:
            return OutputPlan(_grammar({"anyOf": [calls, answer_schema]}, "response_format"), may_call=True)
        if native_tools:
            return OutputPlan(may_call=True)
        call_rules = _ROOT.sub("icdn-call", _grammar(calls, "tools"))
        # An answer is any text that does not open like a call.
        return OutputPlan(call_rules + "\nroot ::= icdn-call | icdn-text\nicdn-text ::= [^{[] .*\n", may_call=True)
    if answer_schema is not None:
        return OutputPlan(_grammar(answer_schema, "response_format"))
    return PLAIN_TEXT


def _calls_schema(tools: tuple[FunctionTool, ...], parallel: bool) -> dict[str, Any]:
    one = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    call = one[0] if len(one) == 1 else {"anyOf": one}
    if not parallel:
        return call
    return {"type": "array", "items": call, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS}


def _grammar(schema: dict[str, Any], param: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    _check_repeats(schema, param)
    try:
        grammar: str = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises whatever it meets; the schema is the client's
        raise InvalidRequest(f"The JSON schema is not one this worker can enforce: {exc}", param=param) from None
    return grammar


def _check_repeats(node: Any, param: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _REPEATS and isinstance(value, int) and value > MAX_SCHEMA_REPEAT:
                raise InvalidRequest(f"'{key}' in the JSON schema is over {MAX_SCHEMA_REPEAT}.", param=param)
            _check_repeats(value, param)
    elif isinstance(node, list):
        for item in node:
            _check_repeats(item, param)
