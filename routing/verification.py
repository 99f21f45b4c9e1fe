"""Gateway ↔ verifier: what a reference model is asked to check, and what it finds (JSON).

A verifier is a trusted process (run by the operator) that loads the weights
file a model offer names by digest and scores a worker's answer against it
in one prefill (teacher forcing): it renders the client's request itself and
compares the worker's prompt ids, checks the completion ids detokenize to the
text the client got, and per completion token measures

- the *gap*: ``max log p - log p(chosen)`` under the reference (greedy
  answers: an honest worker's gaps stay small; a cruder model's do not), and
- for sampled answers, ``Z = Σ(log q(x_t) + H_t) / √Σ Var_t`` under the
  sampling distribution ``q`` (temperature and top-p applied): about N(0, 1)
  for an honest worker, shifted below 0 for a cheaper one.

``GET INFO_PATH`` says which file it holds; ``POST SCORE_PATH`` scores one
answer. Both need the verifier key as a bearer token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routing.audit_record import MAX_IDS
from routing.bounds import bounded_float, bounded_int, bounded_list, printable
from routing.errors import InvalidRequest
from routing.openai_requests import GenerationRequest
from routing.openai_tools import MAX_TOOL_CALLS
from routing.wire import sha256_hex

INFO_PATH = "/v1/infercdn/verifier"
SCORE_PATH = "/internal/v1/score"
MAX_TEXT_CHARS = 4 << 20
# The largest gaps an answer reports, with their positions: evidence, bounded.
EVIDENCE_GAPS = 8


# What a vLLM reference scores: answers whose request says nothing vLLM would sample differently by
# (its own extras — repetition_penalty, top_k, guided decoding, a tool parser — are beyond what it checks).
_VLLM_SCORABLE_FIELDS = frozenset(
    {
        "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
        "seed", "stream", "stream_options", "n", "logprobs", "top_logprobs", "user", "metadata",
        "frequency_penalty", "presence_penalty",
    }
)  # fmt: skip


def scorable(runtime: str, body: dict[str, Any], request: GenerationRequest) -> bool:
    """Whether a verifier for this runtime's offers can score the answer. A llama.cpp reference scores every
    answer (it samples as the worker does); a vLLM one, answers without penalties, tools or schemas, and
    sampled ones without a top-p cut (it scores from vLLM's top logprobs: enough for a gap, and for a Z over
    the likeliest tokens, not for a cut that needs every token's probability)."""
    if runtime != "vllm":
        return True
    sampling = request.sampling
    plain = not (sampling.frequency_penalty or sampling.presence_penalty or request.tools)
    return (
        (sampling.temperature <= 0 or sampling.top_p >= 1.0)
        and plain
        and not request.response_format.structured
        and (body.keys() <= _VLLM_SCORABLE_FIELDS)
    )


@dataclass(frozen=True, slots=True)
class VerifierInfo:
    model: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "sha256": self.sha256}

    @classmethod
    def from_json(cls, obj: Any) -> VerifierInfo:
        try:
            return cls(printable(obj["model"], "model", 128), sha256_hex(obj["sha256"]))
        except (KeyError, TypeError) as exc:
            raise InvalidRequest(f"malformed verifier info: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class DeliveredCall:
    """A tool call the client was sent: the worker read it out of its text (or, for a named function, its
    text is the arguments)."""

    name: str
    arguments: str  # JSON text, as the client got it

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "arguments": self.arguments}

    @classmethod
    def from_json(cls, obj: Any) -> DeliveredCall:
        arguments = obj["arguments"]
        if not isinstance(arguments, str) or len(arguments) > MAX_TEXT_CHARS:
            raise InvalidRequest("a call's 'arguments' must be a string", param="calls")
        return cls(printable(obj["name"], "calls", 64), arguments)


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    request: dict[str, Any]  # the client's request body, as the gateway parsed it
    prompt: tuple[int, ...]  # what the worker says it read
    completion: tuple[int, ...]  # what it says it sampled
    end_token: int | None  # the end-of-generation token it says it stopped on
    text: str  # the content the client was sent
    calls: tuple[DeliveredCall, ...] = ()  # the tool calls it was sent

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "prompt": list(self.prompt),
            "completion": list(self.completion),
            "end_token": self.end_token,
            "text": self.text,
            "calls": [c.to_json() for c in self.calls],
        }

    @classmethod
    def from_json(cls, obj: Any) -> ScoreRequest:
        try:
            request = obj["request"]
            if not isinstance(request, dict):
                raise InvalidRequest("'request' must be the client's request object", param="request")
            end = obj["end_token"]
            text = obj["text"]
            if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
                raise InvalidRequest("'text' must be a string", param="text")
            return cls(
                request=request,
                prompt=_ids(obj["prompt"], "prompt"),
                completion=_ids(obj["completion"], "completion"),
                end_token=None if end is None else bounded_int(end, "end_token", 0, (1 << 31) - 1),
                text=text,
                calls=tuple(
                    DeliveredCall.from_json(c) for c in bounded_list(obj.get("calls", []), "calls", MAX_TOOL_CALLS)
                ),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidRequest(f"malformed score request: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Score:
    prompt_matches: bool  # the worker's prompt ids are what the client's request renders to
    text_matches: bool  # its completion ids detokenize to what the client was sent
    tokens: int  # scored: the completion, and the end token where there was one
    max_gap: float  # nats; 0 for an empty completion
    max_gap_at: int  # the position of the largest gap in the completion (its end token: ``tokens - 1``)
    largest_gaps: tuple[tuple[int, float], ...]  # (position, gap), largest first, at most EVIDENCE_GAPS
    z: float | None  # sampled answers only
    greedy: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_matches": self.prompt_matches,
            "text_matches": self.text_matches,
            "tokens": self.tokens,
            "max_gap": self.max_gap,
            "max_gap_at": self.max_gap_at,
            "largest_gaps": [list(g) for g in self.largest_gaps],
            "z": self.z,
            "greedy": self.greedy,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Score:
        try:
            z = obj["z"]
            gaps = bounded_list(obj["largest_gaps"], "largest_gaps", EVIDENCE_GAPS)
            return cls(
                prompt_matches=_flag(obj["prompt_matches"], "prompt_matches"),
                text_matches=_flag(obj["text_matches"], "text_matches"),
                tokens=bounded_int(obj["tokens"], "tokens", 0, 2 * MAX_IDS),
                max_gap=_gap(obj["max_gap"]),
                max_gap_at=bounded_int(obj["max_gap_at"], "max_gap_at", 0, 2 * MAX_IDS),
                largest_gaps=tuple((bounded_int(p, "position", 0, 2 * MAX_IDS), _gap(g)) for p, g in gaps),
                z=None if z is None else bounded_float(z, "z", -1e9, 1e9),
                greedy=_flag(obj["greedy"], "greedy"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"malformed score: {exc!r}") from None


# A token the sampler could never have drawn (outside top-p, or probability 0): reported as this gap.
IMPOSSIBLE_GAP = 1e6


def _gap(value: Any) -> float:
    return bounded_float(value, "gap", 0.0, IMPOSSIBLE_GAP)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false", param=name)
    return value


def _ids(value: Any, name: str) -> tuple[int, ...]:
    ids = bounded_list(value, name, MAX_IDS)
    return tuple(bounded_int(t, name, 0, (1 << 31) - 1) for t in ids)
