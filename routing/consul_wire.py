"""A worker's registration as Consul service ``Meta``, signed with the join token.

Consul meta values are short strings (≤ 512 characters, ≤ 64 keys), so each
offer gets its own key. The whole set is signed (HMAC with a key derived
from the join token), so a gateway accepts only workers that hold the
token, even if someone else can write to the Consul catalog.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from routing.announce import Registration, check_worker_id, registration_from_map
from routing.errors import InvalidRequest
from routing.json_limits import loads_bounded
from routing.signing import derive_key
from routing.wire import offer_to_json

CONSUL_META = "infercdn consul meta v1"
SIGNATURE_KEY = "infercdn_sig"
MAX_OFFERS = 48  # Consul allows 64 meta keys; the rest are ours


def _sign(join_token: str, service_id: str, meta: dict[str, str]) -> str:
    canonical = service_id + "\n" + "\n".join(f"{k}={meta[k]}" for k in sorted(meta) if k != SIGNATURE_KEY)
    return hmac.new(derive_key(join_token, CONSUL_META), canonical.encode(), hashlib.sha256).hexdigest()


def registration_to_meta(reg: Registration, join_token: str) -> dict[str, str]:
    hw = reg.hardware
    meta = {
        "infercdn_url": reg.url,
        "infercdn_region": reg.region,
        "infercdn_runtime": reg.runtime,
        "infercdn_capacity": str(reg.capacity),
        "infercdn_hardware": json.dumps([hw.cpu[:200], hw.cores, hw.memory_bytes, hw.gpu[:200], hw.gpu_memory_bytes]),
    }
    for i, offer in enumerate(reg.offers[:MAX_OFFERS]):
        entry = {k: v for k, v in offer_to_json(offer, 0).items() if k not in ("object", "created", "owned_by")}
        meta[f"infercdn_offer_{i}"] = json.dumps(entry, separators=(",", ":"))[:512]
    meta[SIGNATURE_KEY] = _sign(join_token, reg.worker_id, meta)
    return meta


def registration_from_service(service: dict[str, Any], join_token: str) -> Registration:
    """Read a Consul health entry's ``Service``; InvalidRequest if unsigned, forged or malformed."""
    try:
        service_id = check_worker_id(str(service["ID"]))
        meta: dict[str, str] = dict(service.get("Meta") or {})
        given = meta.get(SIGNATURE_KEY, "")
        if not hmac.compare_digest(given.encode(), _sign(join_token, service_id, meta).encode()):
            raise InvalidRequest(f"Consul service {service_id} is not signed with this fleet's join token")
        cpu, cores, memory, gpu, gpu_memory = loads_bounded(meta["infercdn_hardware"])
        offer_keys = sorted((k for k in meta if k.startswith("infercdn_offer_")), key=_offer_number)
        return registration_from_map(
            {
                "worker_id": service_id,
                "url": meta["infercdn_url"],
                "region": meta.get("infercdn_region", ""),
                "runtime": meta.get("infercdn_runtime", ""),
                "hardware": {
                    "cpu": cpu,
                    "cores": cores,
                    "memory_bytes": memory,
                    "gpu": gpu,
                    "gpu_memory_bytes": gpu_memory,
                },
                "capacity": int(meta.get("infercdn_capacity", "1")),
                "offers": [loads_bounded(meta[k]) for k in offer_keys],
            }
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed Consul service entry: {exc!r}") from None


def _offer_number(key: str) -> int:
    return int(key.rsplit("_", 1)[1])
