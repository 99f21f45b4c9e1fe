"""Whether the completion ids a worker says it sampled are what the client was sent.

The client gets text, or tool calls the worker read out of its text:

- plain content (any ``tool_choice``, when the answer did not become calls):
  the ids spell it;
- a call to the function ``tool_choice`` names: the ids spell its arguments;
- ``auto`` or ``required`` calls: the ids' text, read back as the worker reads
  it (``tool_calls.parse_calls``), gives the same functions with the same
  arguments, and no content went out beside them.

Past a stop string the client's text was cut, while the ids go on to the
stop's end.
"""

from __future__ import annotations

import json

from edge_worker.runtimes.llama_cpp.tool_calls import parse_calls
from routing.openai_requests import GenerationRequest
from routing.openai_tools import ToolCall
from routing.verification import DeliveredCall, ScoreRequest


def delivered(detokenized: str, job: ScoreRequest, request: GenerationRequest) -> bool:
    stops = request.sampling.stop
    choice = request.tool_choice
    if choice.mode == "function":
        if len(job.calls) != 1 or job.calls[0].name != choice.function or job.text:
            return False
        return _spells(detokenized, job.calls[0].arguments, stops)
    if not job.calls:
        return _spells(detokenized, job.text, stops)
    if job.text or choice.mode == "none":
        return False
    read_back = parse_calls(_cut_at_stop(detokenized, stops), request.tools)
    return read_back is not None and _same_calls(read_back, job.calls)


def _spells(detokenized: str, sent: str, stops: tuple[str, ...]) -> bool:
    # A stop inside a multi-byte character leaves a replacement character the client never saw.
    whole = detokenized.rstrip("\ufffd")
    if whole == sent.rstrip("\ufffd"):
        return True
    return any(detokenized.startswith(sent + stop) for stop in stops)


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text before the first stop string, as the worker's stop scanner hands it on."""
    cuts = [at for at in (text.find(stop) for stop in stops if stop) if at >= 0]
    return text[: min(cuts)] if cuts else text


def _same_calls(read_back: tuple[ToolCall, ...], sent: tuple[DeliveredCall, ...]) -> bool:
    """The same functions with the same arguments, compared as JSON values (spacing is the worker's to choose;
    the call ids are its own)."""
    if len(read_back) != len(sent):
        return False
    for mine, theirs in zip(read_back, sent, strict=True):
        try:
            same = mine.name == theirs.name and json.loads(mine.arguments) == json.loads(theirs.arguments)
        except ValueError:
            return False
        if not same:
            return False
    return True
