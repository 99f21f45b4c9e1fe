"""Suitability: which offers can serve a request at all.

A request fits an offer when the model id (or alias) matches, the offer can
do what the request asks (tools, structured output, logprobs, vision, ``n``;
if no offer of the model can, a 400 names what is missing), the
quantization satisfies the client's constraints (a ``model:LABEL`` suffix
and/or a ``quantizations`` list of classes or labels, as OpenRouter's filter),
and the context holds the prompt plus ``max_tokens``. Region is a preference,
never a filter. When nothing fits, the error says which constraint failed:
503 for a quantization no worker offers now (one may join), 400
``context_length_exceeded`` for a request larger than every offer's context.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from routing.capabilities import NO_NEEDS, Needs
from routing.embedding_requests import EmbeddingRequest
from routing.errors import ContextLengthExceeded, InvalidRequest, NoSuitableWorker
from routing.fleet import Candidate
from routing.model_ref import parse_model_ref
from routing.openai_requests import GenerationRequest

# Fields that steer routing and mean nothing to a worker: stripped before forwarding.
ROUTING_FIELDS = ("quantizations", "region")

# A deliberately low token estimate (≈ 4 characters a token in English, fewer
# elsewhere): the worker enforces the exact limit, so the gateway only rules
# out workers that certainly cannot fit, never one that might.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Requirements:
    model: str  # the id or alias, without a ":QUANT" suffix
    suffix: str = ""  # the ":QUANT" suffix (a label or class); empty = any
    quantizations: tuple[str, ...] = ()  # any of these classes or labels; empty = any
    min_context: int = 0  # estimated prompt tokens + max_tokens
    region: str = ""  # preferred region; empty = no preference
    needs: Needs = NO_NEEDS


# What the gateway routes: a generation (chat, completions) or an embedding request.
RoutedRequest = GenerationRequest | EmbeddingRequest


def requirements_of(body: dict[str, Any], request: RoutedRequest, region_header: str = "") -> Requirements:
    ref = parse_model_ref(request.model)
    region = body.get("region", region_header) or ""
    if not isinstance(region, str):
        raise InvalidRequest("'region' must be a string.", param="region")
    return Requirements(
        model=ref.name,
        suffix=ref.quantization,
        quantizations=_quantizations(body.get("quantizations")),
        min_context=_min_context(request),
        region=region,
        needs=request.needs,
    )


def estimate_prompt_tokens(request: RoutedRequest) -> int:
    """A low estimate of the tokens the worker reads (every input of an embedding request together)."""
    if isinstance(request, EmbeddingRequest):
        return request.estimated_tokens(CHARS_PER_TOKEN)
    texts = [m.content for m in request.messages] if request.messages is not None else [request.prompt or ""]
    return sum(len(t) for t in texts) // CHARS_PER_TOKEN


def completion_allowance(request: RoutedRequest) -> int | None:
    """The most tokens the answer may generate: ``max_tokens``, 0 for embeddings, None where unbounded."""
    return 0 if isinstance(request, EmbeddingRequest) else request.sampling.max_tokens


def _min_context(request: RoutedRequest) -> int:
    # Each input of an embedding request is read on its own: the longest must fit.
    if isinstance(request, EmbeddingRequest):
        return request.largest_input_tokens(CHARS_PER_TOKEN)
    return estimate_prompt_tokens(request) + (request.sampling.max_tokens or 1)


def suitable(candidates: Sequence[Candidate], req: Requirements) -> list[Candidate]:
    """The candidates that fit; NoSuitableWorker naming the failed constraint if none does."""
    able = [c for c in candidates if c.offer.capabilities.missing(req.needs) is None]
    if not able and candidates:
        candidates[0].offer.capabilities.require(req.needs, req.model)
    fit_quant = [c for c in able if _quant_fits(c, req)]
    if not fit_quant:
        have = sorted({c.offer.quantization.label for c in able})
        wanted = " and ".join(filter(None, [req.suffix, " or ".join(req.quantizations)]))
        raise NoSuitableWorker(
            f"No worker serves '{req.model}' at quantization {wanted} (available: {', '.join(have)}).",
            code="no_suitable_quantization",
        )
    fit_context = [c for c in fit_quant if c.offer.context_length >= req.min_context]
    if not fit_context:
        # Certain, not transient (the estimate is a lower bound): a client
        # error, as OpenAI reports it, rather than a 503 inviting retries.
        largest = max(c.offer.context_length for c in fit_quant)
        if not req.needs.generation:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {largest} tokens, and this request's longest input "
                f"has at least {req.min_context}. Please shorten it.",
                param="input",
            )
        raise ContextLengthExceeded(
            f"This model's maximum context length is {largest} tokens, and this request needs at least "
            f"{req.min_context} (prompt + max_tokens). Please reduce the length of the prompt or the completion.",
            param="max_tokens",
        )
    return fit_context


def _quant_fits(candidate: Candidate, req: Requirements) -> bool:
    q = candidate.offer.quantization
    return (not req.suffix or q.matches(req.suffix)) and (
        not req.quantizations or any(q.matches(w) for w in req.quantizations)
    )


def forwarded_body(
    raw: bytes, body: dict[str, Any], req: Requirements, candidate: Candidate, completion_cap: int | None = None
) -> bytes:
    """What the chosen worker receives: the client's bytes, unless they must change.

    Routing-only fields are dropped, and where the worker holds the model at
    more than one quantization (or the client named one), ``model`` names the
    chosen offer exactly (``id:LABEL``) so the worker serves that file. A
    ``completion_cap`` (what a budgeted key has left, for a request without
    ``max_tokens``) becomes its ``max_tokens`` where the offer's context would
    allow more.
    """
    offer = candidate.offer
    siblings = sum(1 for o in candidate.state.offers if o.model == offer.model)
    pin = bool(req.suffix) or siblings > 1
    cap = completion_cap is not None and completion_cap < offer.context_length
    if not pin and not cap and not any(f in body for f in ROUTING_FIELDS):
        return raw
    out = {k: v for k, v in body.items() if k not in ROUTING_FIELDS}
    if cap:
        out["max_tokens"] = completion_cap
    if pin:
        # A foreign upstream knows the model by its plain name; an InferCDN worker by id:LABEL.
        foreign = candidate.state.worker.source == "upstream"
        out["model"] = offer.model if foreign else f"{offer.model}:{offer.quantization.label}"
    return json.dumps(out, ensure_ascii=False).encode()


def _quantizations(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(q, str) and q for q in raw):
        raise InvalidRequest("'quantizations' must be an array of strings.", param="quantizations")
    return tuple(raw)
