"""Wire schemas shared by gateway and worker: a model offer as JSON.

A worker's ``/v1/models`` lists OpenAI model objects with InferCDN's extra
fields (quantization, context length, runtime, capabilities); the gateway
reads them back into ``ModelOffer`` records. A plain OpenAI server (vLLM,
llama-server, Ollama) lists only ids: its quantization is read from the name
where the name says it, its context from vLLM's ``max_model_len`` where
given, and it is assumed able to do what it is asked (it refuses the rest).
"""

from __future__ import annotations

import re
from typing import Any

from routing.bounds import bounded_float, bounded_int, bounded_list, printable
from routing.capabilities import capabilities_from_json, capabilities_to_json
from routing.errors import InvalidRequest
from routing.fleet import ModelOffer
from routing.quantization import QUANT_CLASSES, Quantization, from_model_name

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
        "capabilities": capabilities_to_json(offer.capabilities),
        "sha256": offer.sha256,
    }


# What one offer may claim: bounded, since it comes from a worker.
MAX_CONTEXT_LENGTH = 10_000_000
MAX_ALIASES = 16
# The runtime a plain OpenAI server's offers are listed under.
PLAIN_RUNTIME = "openai-compatible"


_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(value: Any) -> str:
    """A file digest as lowercase hex, or empty (none claimed); InvalidRequest for anything else."""
    if value == "":
        return ""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidRequest("'sha256' must be 64 lowercase hex digits", param="sha256")
    return value


def offer_from_json(obj: Any) -> ModelOffer:
    """Read one entry of a worker's ``/v1/models``; InvalidRequest if malformed or out of bounds."""
    try:
        model = printable(obj["id"], "id", 128, required=True)
        plain = "quantization" not in obj
        context = obj.get("context_length", obj.get("max_model_len", MAX_CONTEXT_LENGTH if plain else None))
        return ModelOffer(
            model=model,
            quantization=from_model_name(model) if plain else _quantization(obj["quantization"]),
            context_length=bounded_int(context, "context_length", 1, MAX_CONTEXT_LENGTH),
            runtime=PLAIN_RUNTIME if plain else printable(obj.get("runtime", ""), "runtime", 32),
            architecture=printable(obj.get("architecture", ""), "architecture", 64),
            aliases=tuple(
                printable(a, "aliases", 128, required=True)
                for a in bounded_list(obj.get("aliases", ()), "aliases", MAX_ALIASES)
            ),
            capabilities=capabilities_from_json(obj.get("capabilities")),
            sha256=sha256_hex(obj.get("sha256", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed model entry: {exc!r}") from None


def _quantization(q: Any) -> Quantization:
    quant_class = printable(q["class"], "quantization.class", 16)
    if quant_class not in QUANT_CLASSES:
        raise InvalidRequest(f"'quantization.class' must be one of {', '.join(QUANT_CLASSES)}")
    return Quantization(
        label=printable(q["label"], "quantization.label", 32),
        bits=bounded_float(q["bits"], "quantization.bits", 0, 64),
        quant_class=quant_class,
    )


def offers_from_models_list(obj: Any) -> tuple[ModelOffer, ...]:
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise InvalidRequest("a model list must be an object with a 'data' array")
    return tuple(offer_from_json(entry) for entry in obj["data"])
