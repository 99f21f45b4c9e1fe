"""What an offer can do beyond plain text generation, and what a request needs of it.

Each offer announces its capabilities (a worker derives them from its runtime
and model; a static upstream declares them in its config line). A request's
needs come from its fields (``tools`` needs tools, ``n=4`` needs ``max_n`` of
at least 4); suitability routes it only to offers whose capabilities cover
them, and when none do, the error names the first thing missing.

Generating text is a capability too, one every offer has unless it says
otherwise: an embedding model embeds and generates nothing, so a chat request
for it is refused by name instead of failing on the worker.

A plain OpenAI server that says nothing about itself is assumed able to do
everything: it refuses what it cannot do with its own 4xx, which reaches the
client as it is, instead of the gateway guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from routing.bounds import bounded_int
from routing.errors import InvalidRequest

# OpenAI's own limit on ``n``.
MAX_N = 128
FLAGS = ("tools", "structured_output", "logprobs", "embeddings", "vision")
# The request field that asks for each capability (``n=K`` is asked by ``n``).
_PARAM_OF = {
    "tools": "tools",
    "structured_output": "response_format",
    "logprobs": "logprobs",
    "vision": "messages",
    "embeddings": "model",
    "generation": "model",
}


@dataclass(frozen=True, slots=True)
class Capabilities:
    tools: bool = False
    structured_output: bool = False
    logprobs: bool = False
    embeddings: bool = False
    vision: bool = False
    max_n: int = 1
    generation: bool = True  # chat and completions; False for an embedding model

    def missing(self, needs: Needs) -> str | None:
        """The first thing ``needs`` asks that this cannot do, as a capability name; None if nothing."""
        if needs.generation and not self.generation:
            return "generation"
        for name in FLAGS:
            if getattr(needs, name) and not getattr(self, name):
                return name
        if needs.n > self.max_n:
            return f"n={needs.n}"
        return None

    def require(self, needs: Needs, model: str) -> None:
        """InvalidRequest naming the model and the first thing ``needs`` asks that this cannot do.

        A 400, certain for the fleet as it is, not a 503 inviting the same request again."""
        missing = self.missing(needs)
        if missing is not None:
            raise InvalidRequest(
                f"model '{model}' has no worker that supports {missing}.",
                param=_PARAM_OF.get(missing, "n"),
                code="unsupported_capability",
            )

    def union(self, other: Capabilities) -> Capabilities:
        return Capabilities(
            **{name: getattr(self, name) or getattr(other, name) for name in FLAGS},
            max_n=max(self.max_n, other.max_n),
            generation=self.generation or other.generation,
        )

    def names(self) -> list[str]:
        return [name for name in FLAGS if getattr(self, name)]


# What a server that does not say is assumed to do (see the module docstring).
ASSUMED = Capabilities(**dict.fromkeys(FLAGS, True), max_n=MAX_N)
# Text generation only: what nothing in a request can be refused by.
PLAIN = Capabilities()
# Nothing at all: where unions over offers start.
NOTHING = Capabilities(generation=False)
# An embedding model's, on any runtime: it embeds and generates nothing.
EMBEDDING_ONLY = Capabilities(embeddings=True, generation=False)


@dataclass(frozen=True, slots=True)
class Needs:
    """What one request asks of an offer beyond generating text."""

    tools: bool = False
    structured_output: bool = False
    logprobs: bool = False
    embeddings: bool = False
    vision: bool = False
    n: int = 1
    generation: bool = True  # False for /v1/embeddings


def capabilities_to_json(c: Capabilities) -> dict[str, Any]:
    return {f.name: getattr(c, f.name) for f in fields(c)}


def capabilities_from_json(obj: Any) -> Capabilities:
    """A worker's claim, checked: booleans for the flags, a bounded ``max_n``; unknown keys ignored
    (a newer worker may announce more)."""
    if obj is None:
        return ASSUMED
    if not isinstance(obj, dict):
        raise InvalidRequest("'capabilities' must be an object", param="capabilities")
    flags: dict[str, bool] = {}
    for name in FLAGS:
        value = obj.get(name, False)
        if not isinstance(value, bool):
            raise InvalidRequest(f"'capabilities.{name}' must be a boolean", param="capabilities")
        flags[name] = value
    # Workers from before embeddings say nothing of generation: they all generated.
    generation = obj.get("generation", True)
    if not isinstance(generation, bool):
        raise InvalidRequest("'capabilities.generation' must be a boolean", param="capabilities")
    max_n = bounded_int(obj.get("max_n", 1), "capabilities.max_n", 1, MAX_N)
    return Capabilities(**flags, max_n=max_n, generation=generation)


def parse_capability_list(text: str, max_n: int) -> Capabilities:
    """A config line's ``capabilities=tools,logprobs`` (``none`` for plain generation).

    A list naming ``embeddings`` without ``generation`` is an embedding model's: it generates nothing."""
    names = [] if text == "none" else [n.strip() for n in text.split(",") if n.strip()]
    known = (*FLAGS, "generation")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown capabilities {', '.join(unknown)} (known: {', '.join(known)}, or none)")
    generation = "generation" in names or "embeddings" not in names
    return Capabilities(**{name: name in names for name in FLAGS}, max_n=max_n, generation=generation)


# A plain request: text out, one choice.
NO_NEEDS = Needs()
# A /v1/embeddings request.
EMBEDDING_NEEDS = Needs(embeddings=True, generation=False)
