"""Wire schemas shared by gateway and worker: a model offer as JSON.

A worker's ``/v1/models`` lists OpenAI model objects with InferCDN's extra
fields (quantization, context length, runtime); the gateway reads them back
into ``ModelOffer`` records.
"""

from __future__ import annotations

from typing import Any

from routing.bounds import bounded_float, bounded_int, bounded_list, printable
from routing.errors import InvalidRequest
from routing.fleet import ModelOffer
from routing.quantization import QUANT_CLASSES, Quantization

# nginx's status for a client that went away before its answer (logs and metrics only).
CLIENT_CLOSED = 499

# The request id travels gateway → worker in this header, so both log lines carry it.
REQUEST_ID = "x-request-id"

# A worker ends a stream whose client did not ask for include_usage with this
# SSE comment (clients skip comments) and the usage JSON, so the gateway can
# count tokens: ": usage {"prompt_tokens":…,"completion_tokens":…}".
USAGE_COMMENT = b": usage "


def quantization_to_json(q: Quantization) -> dict[str, Any]:
    return {"label": q.label, "bits": q.bits, "class": q.quant_class}


def offer_to_json(offer: ModelOffer, created: int) -> dict[str, Any]:
    return {
        "id": offer.model,
        "object": "model",
        "created": created,
        "owned_by": "infercdn",
        "quantization": quantization_to_json(offer.quantization),
        "context_length": offer.context_length,
        "runtime": offer.runtime,
        "architecture": offer.architecture,
        "aliases": list(offer.aliases),
    }


# What one offer may claim: bounded, since it comes from a worker.
MAX_CONTEXT_LENGTH = 10_000_000
MAX_ALIASES = 16


def offer_from_json(obj: Any) -> ModelOffer:
    """Read one entry of a worker's ``/v1/models``; InvalidRequest if malformed or out of bounds."""
    try:
        q = obj["quantization"]
        quant_class = printable(q["class"], "quantization.class", 16)
        if quant_class not in QUANT_CLASSES:
            raise InvalidRequest(f"'quantization.class' must be one of {', '.join(QUANT_CLASSES)}")
        return ModelOffer(
            model=printable(obj["id"], "id", 128, required=True),
            quantization=Quantization(
                label=printable(q["label"], "quantization.label", 32),
                bits=bounded_float(q["bits"], "quantization.bits", 0, 64),
                quant_class=quant_class,
            ),
            context_length=bounded_int(obj["context_length"], "context_length", 1, MAX_CONTEXT_LENGTH),
            runtime=printable(obj.get("runtime", ""), "runtime", 32),
            architecture=printable(obj.get("architecture", ""), "architecture", 64),
            aliases=tuple(
                printable(a, "aliases", 128, required=True)
                for a in bounded_list(obj.get("aliases", ()), "aliases", MAX_ALIASES)
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed model entry: {exc!r}") from None


def offers_from_models_list(obj: Any) -> tuple[ModelOffer, ...]:
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise InvalidRequest("a model list must be an object with a 'data' array")
    return tuple(offer_from_json(entry) for entry in obj["data"])
