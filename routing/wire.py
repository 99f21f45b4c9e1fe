"""Wire schemas shared by gateway and worker: a model offer as JSON.

A worker's ``/v1/models`` lists OpenAI model objects with InferCDN's extra
fields (quantization, context length, runtime); the gateway reads them back
into ``ModelOffer`` records.
"""

from __future__ import annotations

from typing import Any

from routing.errors import InvalidRequest
from routing.fleet import ModelOffer
from routing.quantization import Quantization

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


def offer_from_json(obj: Any) -> ModelOffer:
    """Read one entry of a worker's ``/v1/models``; InvalidRequest if malformed."""
    try:
        q = obj["quantization"]
        return ModelOffer(
            model=str(obj["id"]),
            quantization=Quantization(label=str(q["label"]), bits=float(q["bits"]), quant_class=str(q["class"])),
            context_length=int(obj["context_length"]),
            runtime=str(obj.get("runtime", "")),
            architecture=str(obj.get("architecture", "")),
            aliases=tuple(str(a) for a in obj.get("aliases", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed model entry: {exc!r}") from None


def offers_from_models_list(obj: Any) -> tuple[ModelOffer, ...]:
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise InvalidRequest("a model list must be an object with a 'data' array")
    return tuple(offer_from_json(entry) for entry in obj["data"])
