"""The token ids behind a vLLM answer, for the audit record a gateway asks for (``routing.audit_record``).

The relay asks vLLM for ``return_token_ids``: a whole answer then carries
``prompt_token_ids`` and each choice's ``token_ids``; a stream carries the
prompt's in its first chunk and each chunk's new ids beside its text. The
ids are taken out here (the client did not ask for them) and become the
record. vLLM counts the end-of-sequence token it stopped on among the
completion ids (and in ``usage``); the record names it as the end token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from routing.audit_record import MAX_CHOICES, MAX_IDS, MAX_TOKEN_ID, ChoiceIds

# What vLLM adds to an answer when asked for the ids.
_ANSWER_FIELDS = ("prompt_token_ids", "prompt_text")


@dataclass(slots=True)
class _Choice:
    ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: Any = None


@dataclass(slots=True)
class AnswerIds:
    """The ids of one answer, gathered from vLLM's whole body or from its stream's chunks."""

    keep: bool = False  # the client asked for the ids itself: leave them in what it gets
    prompt: list[int] = field(default_factory=list)
    _choices: dict[int, _Choice] = field(default_factory=dict)

    def take(self, obj: dict[str, Any]) -> None:
        """The ids in one whole answer or stream chunk, taken out of it unless the client keeps them."""
        prompt = obj.get("prompt_token_ids") if self.keep else _pop_all(obj, _ANSWER_FIELDS)
        if isinstance(prompt, list):
            self.prompt = _bounded(prompt)
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                continue
            index = choice.get("index", 0)
            if not 0 <= index < MAX_CHOICES:
                continue
            mine = self._choices.setdefault(index, _Choice())
            ids = choice.get("token_ids") if self.keep else choice.pop("token_ids", None)
            if isinstance(ids, list) and len(mine.ids) + len(ids) <= MAX_IDS:
                mine.ids.extend(_bounded(ids))
            if isinstance(choice.get("finish_reason"), str):
                mine.finish_reason = choice["finish_reason"]
                mine.stop_reason = choice.get("stop_reason")

    def choices(self) -> list[ChoiceIds]:
        out = []
        for index in range(max(self._choices, default=-1) + 1):
            mine = self._choices.get(index, _Choice())
            # Stopped, by no stop string or stop token the client named: on the end-of-sequence token, last.
            on_end = mine.finish_reason == "stop" and mine.stop_reason is None and mine.ids
            out.append(ChoiceIds(tuple(mine.ids[:-1]), mine.ids[-1]) if on_end else ChoiceIds(tuple(mine.ids)))
        return out


def _pop_all(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    first = obj.pop(names[0], None)
    for name in names[1:]:
        obj.pop(name, None)
    return first


def _bounded(ids: list[Any]) -> list[int]:
    """vLLM is ours, but a record must hold to its bounds whatever it gets: junk becomes -1 (never a token)."""
    return [i if isinstance(i, int) and 0 <= i <= MAX_TOKEN_ID else -1 for i in ids[:MAX_IDS]]
