"""Function calling on llama.cpp: tools into the prompt, calls out of the text.

A model whose chat template takes ``tools`` (it names the variable) gets them
the way it was trained to read them, and its calls are read back from its
own format (Hermes/Qwen ``<tool_call>{…}</tool_call>``, Llama's bare JSON,
Mistral's ``[TOOL_CALLS]``). Any other model is told about the tools in a
system message and answers a call as ``{"name": …, "arguments": {…}}`` (or an
array of them); a grammar (see ``output_plan``) holds it to that shape. Past
calls and tool results in the history are rendered in the same terms.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from routing.openai_requests import ChatMessage, GenerationRequest
from routing.openai_tools import FunctionTool, ToolCall

_TAGGED = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
# What a call may begin with, in any format read here; text that starts otherwise is an answer.
CALL_OPENINGS = ("{", "[", "<tool_call>", "[TOOL_CALLS]")


def template_takes_tools(template: str | None) -> bool:
    return template is not None and "tools" in template


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def template_messages(request: GenerationRequest, native: bool) -> list[dict[str, Any]]:
    """The request's messages as a chat template takes them (``native``: it takes tools itself)."""
    messages = request.messages or ()
    if native:
        return [_native_message(m) for m in messages]
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    out = [_plain_message(m, names, request.parallel_tool_calls) for m in messages]
    if request.tool_choice.mode != "none":
        guide = tools_system_text(request.tools, request.parallel_tool_calls)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + guide}
        else:
            out.insert(0, {"role": "system", "content": guide})
    return out


def template_tools(request: GenerationRequest) -> list[dict[str, Any]] | None:
    if request.tool_choice.mode == "none":
        return None
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in request.tools
    ]


def tools_system_text(tools: tuple[FunctionTool, ...], parallel: bool) -> str:
    listed = "\n".join(
        json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters}) for t in tools
    )
    shape = (
        '[{"name": <function name>, "arguments": <object>}, ...]'
        if parallel
        else ('{"name": <function name>, "arguments": <object>}')
    )
    return (
        f"You can call these functions:\n{listed}\n"
        f"To call functions, reply with only this JSON: {shape}. Otherwise, answer in plain text."
    )


def calls_as_text(calls: tuple[ToolCall, ...], parallel: bool) -> str:
    """Past calls, written the way this model is asked to make them."""
    items = [{"name": c.name, "arguments": _arguments_value(c.arguments)} for c in calls]
    return json.dumps(items[0] if len(items) == 1 and not parallel else items)


def parse_calls(text: str, tools: tuple[FunctionTool, ...]) -> tuple[ToolCall, ...] | None:
    """The calls ``text`` makes, in any format above; None if it is not (only) calls to these tools."""
    body = text.strip().removeprefix("[TOOL_CALLS]").strip()
    segments = _TAGGED.findall(body) or [body]
    names = {t.name for t in tools}
    calls: list[ToolCall] = []
    for segment in segments:
        try:
            obj = json.loads(segment)
        except ValueError:
            return None
        for item in obj if isinstance(obj, list) else [obj]:
            if not isinstance(item, dict) or item.get("name") not in names:
                return None
            arguments = item.get("arguments", item.get("parameters", {}))
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    return None
            if not isinstance(arguments, dict):
                return None
            calls.append(ToolCall(new_call_id(), item["name"], json.dumps(arguments, ensure_ascii=False)))
    return tuple(calls) or None


def may_become_call(text: str) -> bool:
    """Whether text generated so far may still turn out to be a call (so it must be held back)."""
    head = text.lstrip()
    return any(head.startswith(o) or o.startswith(head) for o in CALL_OPENINGS)


def _native_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments_value(c.arguments)}}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    return out


def _plain_message(m: ChatMessage, names: dict[str, str], parallel: bool) -> dict[str, Any]:
    if m.role == "tool":
        # Not every template knows a tool role: a result is told to the model as the user's words.
        name = names.get(m.tool_call_id, "the function")
        return {"role": "user", "content": f"Result of {name} (call {m.tool_call_id}):\n{m.content}"}
    if m.tool_calls:
        text = calls_as_text(m.tool_calls, parallel)
        return {"role": m.role, "content": f"{m.content}\n{text}" if m.content else text}
    return {"role": m.role, "content": m.content}


def _arguments_value(arguments: str) -> Any:
    """Templates take arguments as objects; a client's string that is not JSON stays a string."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments
